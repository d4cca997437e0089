"""How the benchmarks name files in their committed results: repository-relative, so results read the same anywhere."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def repo_relative(path: Path | str) -> str:
    """`path` relative to the repository root when it lies inside it, else as given (absolute)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)
