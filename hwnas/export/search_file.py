"""Reading a `hwnas search` result (search.json) for export: the winning arch, its table, a scaled arch's space."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError

__all__ = ["read_search", "read_scaled", "arch_from_search"]


def read_search(path: str | os.PathLike[str]) -> tuple[str, Path | None]:
    """(winning arch string, LUT it was searched with or None) of a `hwnas search` search.json."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise HwnasError(f"search file {p} not found; run 'hwnas search' first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HwnasError(f"cannot read search file {p}: {exc}; re-run 'hwnas search'") from None
    if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
        raise HwnasError(f"{p} has no winning 'arch'; pass a search.json written by 'hwnas search'")
    lut = data.get("lut")
    return data["arch"], Path(lut) if isinstance(lut, str) and Path(lut).is_file() else None


def read_scaled(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The 'scaled' entry of a `hwnas search --strategy scale` result (what `export_run(scaled=...)` takes), or None
    for an arch of the trained space."""
    read_search(path)  # the file's own errors first
    scaled = json.loads(Path(path).read_text()).get("scaled")
    return scaled if isinstance(scaled, dict) else None


def arch_from_search(path: str | os.PathLike[str]) -> str:
    """The winning arch string of a `hwnas search` result file."""
    return read_search(path)[0]
