"""search.json, pareto.csv and candidates.csv: what a search leaves in the run folder (written atomically).

search.json's top level is the winner of the first budget (``arch``, ``predicted_ms``, ``accuracy``, ``budget_ms``,
``evaluated``, ``seconds``) so `hwnas export --search search.json` needs no other key; ``budgets`` holds one entry per
budget with its own winner and Pareto set. candidates.csv lists every evaluated candidate (what `hwnas report` plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.atomic import atomic_path, atomic_write_json
from hwnas.search.result import SearchResult, pareto_indices

__all__ = ["search_payload", "write_search_outputs", "OUTPUT_FILES"]

OUTPUT_FILES = ("search.json", "pareto.csv", "candidates.csv")
SCHEMA = "hwnas.search/1"


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _clean(value: Any) -> Any:
    """Strict JSON: numpy scalars to Python, NaN/inf to null (json.dumps would write invalid 'NaN')."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return _finite(value)
    return value


def _budget_entry(result: SearchResult) -> dict[str, Any]:
    entry: dict[str, Any] = dict(result.summary())
    entry["accuracy"] = _finite(result.accuracy)
    entry["strategy"] = result.strategy
    entry["notes"] = dict(result.notes)
    entry["pareto"] = [
        {"arch": str(a), "predicted_ms": round(ms, 6), "accuracy": _finite(acc)} for a, ms, acc in result.pareto()
    ]
    return entry


def search_payload(results: Sequence[SearchResult], *, context: dict[str, Any]) -> dict[str, Any]:
    first = _budget_entry(results[0])
    top = {k: first[k] for k in ("arch", "predicted_ms", "accuracy", "budget_ms", "evaluated", "seconds")}
    return _clean(
        {
            "schema": SCHEMA,
            **top,
            "strategy": results[0].strategy,
            **context,
            "pareto": first["pareto"],
            "budgets": [_budget_entry(r) for r in results],
        }
    )


def write_search_outputs(results: Sequence[SearchResult], out_dir: Path, *, context: dict[str, Any]) -> list[Path]:
    """Write the three files (each atomically); returns their paths."""
    import pandas as pd

    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "search.json", search_payload(results, context=context))
    pareto_rows, cand_rows = [], []
    for r in results:
        for a, ms, acc in r.pareto():
            pareto_rows.append({"budget_ms": r.budget_ms, "arch": str(a), "predicted_ms": ms, "accuracy": acc})
        archs = r.genome.decode(r.genes) if len(r.genes) <= 20_000 else None
        on_front = np.zeros(len(r.genes), dtype=bool)
        on_front[pareto_indices(r.latency_ms, r.scores)] = True
        for i in range(len(r.genes)):
            cand_rows.append(
                {
                    "budget_ms": r.budget_ms,
                    "strategy": r.strategy,
                    "arch": str(archs[i]) if archs is not None else "",
                    "predicted_ms": float(r.latency_ms[i]),
                    "accuracy": float(r.scores[i]),
                    "pareto": bool(on_front[i]),
                    "winner": archs is not None and archs[i] == r.arch,
                }
            )
    cols_p = ["budget_ms", "arch", "predicted_ms", "accuracy"]
    cols_c = ["budget_ms", "strategy", "arch", "predicted_ms", "accuracy", "pareto", "winner"]
    paths = [out_dir / "search.json"]
    for name, rows, cols in (("pareto.csv", pareto_rows, cols_p), ("candidates.csv", cand_rows, cols_c)):
        with atomic_path(out_dir / name) as tmp:
            pd.DataFrame(rows, columns=cols).to_csv(tmp, index=False, float_format="%.6g")
        paths.append(out_dir / name)
    return paths
