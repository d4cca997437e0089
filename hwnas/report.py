"""Plots and tables a person reads after a run: the Pareto front of a search (more plots may join: fidelity, α).

Everything here reads files other commands wrote (search.json, candidates.csv) and writes PNGs atomically; nothing is
recomputed, so a report always shows exactly what the search saw.
"""

from __future__ import annotations

import json
from pathlib import Path

from hwnas.atomic import atomic_path
from hwnas.errors import HwnasError

__all__ = ["plot_pareto"]


def plot_pareto(run_dir: Path, *, out: Path | None = None) -> Path:
    """RUN/pareto.png: every evaluated candidate (latency vs accuracy), the Pareto front, budgets and winners."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    run_dir = Path(run_dir)
    search_path, cand_path = run_dir / "search.json", run_dir / "candidates.csv"
    if not search_path.is_file() or not cand_path.is_file():
        raise HwnasError(f"{run_dir} has no search results (search.json + candidates.csv); run "
                         f"'hwnas search --run {run_dir} --lut LUT --budget-ms T' first")
    try:
        search = json.loads(search_path.read_text())
        cands = pd.read_csv(cand_path)
    except (json.JSONDecodeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise HwnasError(f"cannot read search results in {run_dir} ({exc}); re-run 'hwnas search ... --force'") from None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    budgets = search.get("budgets", [search])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, entry in enumerate(budgets):
        color = colors[i % len(colors)]
        part = cands[cands["budget_ms"] == entry["budget_ms"]].sort_values("predicted_ms")
        label = f"≤{entry['budget_ms']:g} ms: {len(part)} evaluated"
        ax.scatter(part["predicted_ms"], part["accuracy"], s=10, alpha=0.35, color=color, label=label)
        front = part[part["pareto"]]
        ax.step(front["predicted_ms"], front["accuracy"], where="post", color=color, lw=1.2)
        ax.axvline(entry["budget_ms"], color=color, ls="--", lw=0.8)
        if entry.get("accuracy") is not None:
            ax.scatter([entry["predicted_ms"]], [entry["accuracy"]], marker="*", s=180, color=color,
                       edgecolor="black", zorder=5)
    ax.set_xlabel(f"predicted latency (ms, {search.get('device', '?')})")
    ax.set_ylabel("val accuracy" if search.get("strategy") != "scale" else "accuracy")
    ax.set_title(f"{search.get('strategy', 'search')} on {search.get('space', '?')}: candidates, Pareto front, winner (★)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(out) if out is not None else run_dir / "pareto.png"
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
