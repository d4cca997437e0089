"""Plots and tables a person reads after a run: the Pareto front of a search (more plots may join: fidelity, α).

Everything here reads files other commands wrote (search.json, candidates.csv) and writes PNGs atomically; nothing is
recomputed, so a report always shows exactly what the search saw.
"""

from __future__ import annotations

import json
from pathlib import Path

from hwnas.atomic import atomic_path
from hwnas.errors import HwnasError

__all__ = ["plot_pareto", "plot_alpha"]


def plot_pareto(run_dir: Path, *, out: Path | None = None) -> Path:
    """RUN/pareto.png: every evaluated candidate (latency vs accuracy), the Pareto front, budgets and winners."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    run_dir = Path(run_dir)
    search_path, cand_path = run_dir / "search.json", run_dir / "candidates.csv"
    if not search_path.is_file() or not cand_path.is_file():
        raise HwnasError(
            f"{run_dir} has no search results (search.json + candidates.csv); run "
            f"'hwnas search --run {run_dir} --lut LUT --budget-ms T' first"
        )
    try:
        search = json.loads(search_path.read_text())
        cands = pd.read_csv(cand_path)
    except (json.JSONDecodeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise HwnasError(
            f"cannot read search results in {run_dir} ({exc}); re-run 'hwnas search ... --force'"
        ) from None
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
            ax.scatter(
                [entry["predicted_ms"]],
                [entry["accuracy"]],
                marker="*",
                s=180,
                color=color,
                edgecolor="black",
                zorder=5,
            )
    ax.set_xlabel(f"predicted latency (ms, {search.get('device', '?')})")
    ax.set_ylabel("val accuracy" if search.get("strategy") != "scale" else "accuracy")
    ax.set_title(
        f"{search.get('strategy', 'search')} on {search.get('space', '?')}: candidates, Pareto front, winner (★)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(out) if out is not None else run_dir / "pareto.png"
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def plot_alpha(run_dir: Path, *, out: Path | None = None) -> Path:
    """RUN/alpha.png for architecture-search runs (fbnet/proxyless/darts/enas), from RUN/alpha_history.json.

    Left: per layer, the probability of the choice it ends with, over epochs (how decided α is). Middle: the skip
    probability of every optional layer (depth decisions). Right: expected latency E[LAT](α) and the argmax arch's
    predicted latency against the target.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    run_dir = Path(run_dir)
    path = run_dir / "alpha_history.json"
    if not path.is_file():
        raise HwnasError(
            f"{run_dir} has no alpha_history.json; it is written by 'hwnas train --mode fbnet|proxyless|darts|enas'"
        )
    try:
        hist = json.loads(path.read_text())
        epochs = hist["epochs"]
        probs = np.array([h["probs"] for h in epochs], dtype=float)  # [epoch, stage, position, choice + skip]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise HwnasError(f"cannot read {path} ({exc}); re-run training") from None
    x = [h["epoch"] + 1 for h in epochs]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110)
    final = probs[-1]
    for s in range(probs.shape[1]):
        for p in range(probs.shape[2]):
            c = int(final[s, p, :-1].argmax())
            axes[0].plot(x, probs[:, s, p, c], lw=0.9, label=f"s{s + 1}p{p + 1} {hist['choices'][s][c]}")
            if probs[:, s, p, -1].max() > 0 and final[s, p, -1] < 1:
                axes[1].plot(x, probs[:, s, p, -1], lw=0.9, label=f"stage {s + 1} layer {p + 1}")
    axes[0].set_title("P(final choice) per layer")
    axes[1].set_title("P(skip) per optional layer")
    axes[1].legend(fontsize=6, ncol=2)
    axes[2].plot(x, [h["expected_ms"] for h in epochs], marker="o", label="E[LAT](α)")
    axes[2].plot(x, [h["argmax_ms"] for h in epochs], marker="s", label="per-layer argmax arch (predicted)")
    if all("arch_ms" in h for h in epochs):
        axes[2].plot(x, [h["arch_ms"] for h in epochs], marker="^", label="derived arch near target (predicted)")
    axes[2].axhline(hist["target_ms"], color="black", ls="--", lw=0.8, label=f"target {hist['target_ms']:g} ms")
    axes[2].set_title("latency vs target")
    axes[2].set_ylabel("ms")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    target = Path(out) if out is not None else run_dir / "alpha.png"
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return target
