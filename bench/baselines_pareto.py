"""Who wins where: hwnas winners against every baseline that is at least as fast (measured), and the Pareto plot.

Why this is its own file: the rule that turns measurements into the headline `pareto_wins` must be short enough to read
in one go and must not be entangled with how the numbers were produced. The rule, per budget:

  hwnas point   = (slowest measured latency of its per-seed winners, mean test accuracy over seeds)
  baselines     = every torchvision model (mean over seeds) and every random-search winner point (any budget)
  eligible      = baselines whose measured latency <= the hwnas point's latency
  beats_all     = hwnas mean test accuracy > every eligible baseline's mean (strictly; ties lose)
                  None when no baseline is that fast (nothing to beat: reported, not counted as a win)

Taking the slowest seed's winner as the hwnas latency is the conservative choice: a faster seed cannot make baselines
drop out of the comparison.

A second, stricter view answers the user's question "my budget is baseline X's latency: what does hwnas give me?":
`up_to_ms` = the measured latency of the baseline(s) a budget was matched to, and eligible = baselines at <= max(hwnas
latency, up_to_ms). A winner far below its budget then still has to beat what the budget would have bought.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["summarize_seeds", "judge_budget", "plot_pareto"]


def summarize_seeds(values: list[float]) -> dict[str, float]:
    """Mean and sample std (ddof=1; 0 with one seed) of per-seed values."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(arr.mean()), 5), "std": round(float(arr.std(ddof=1)) if arr.size > 1 else 0.0, 5)}


def _spread_note(margin: float, std_a: float, std_b: float) -> str:
    if std_a == 0.0 and std_b == 0.0:
        return "no seed spread measured (one seed, or identical results): the margin's noise is unknown"
    return "margin exceeds both seed stds" if abs(margin) > max(std_a, std_b) else "margin within the seed spread"


def judge_budget(
    hwnas: dict[str, Any], baselines: list[dict[str, Any]], *, up_to_ms: float | None = None
) -> dict[str, Any]:
    """Compare one budget's hwnas point (`measured_ms`, `test_acc_mean`) with baseline points (`name`, same keys).

    Baselines count when measured at <= the hwnas point's latency, or at <= `up_to_ms` when that is larger.
    """
    ms, acc = max(hwnas["measured_ms"], up_to_ms or 0.0), hwnas["test_acc_mean"]
    eligible = sorted((b for b in baselines if b["measured_ms"] <= ms), key=lambda b: -b["test_acc_mean"])
    if not eligible:
        return {
            "eligible": [],
            "best_eligible": None,
            "beats_all": None,
            "margin_pp": None,
            "note": "no baseline measured at or below this latency: nothing to beat (not counted as a win)",
        }
    best = eligible[0]
    return {
        "eligible": [
            {"name": b["name"], "measured_ms": b["measured_ms"], "test_acc_mean": b["test_acc_mean"]} for b in eligible
        ],
        "best_eligible": best["name"],
        "beats_all": bool(acc > best["test_acc_mean"]),
        "margin_pp": round(100 * (acc - best["test_acc_mean"]), 3),
        "margin_vs_spread": _spread_note(
            acc - best["test_acc_mean"], hwnas.get("test_acc_std", 0.0), best.get("test_acc_std", 0.0)
        ),
    }


def plot_pareto(path: Path, *, baselines: list[dict[str, Any]], budgets: list[dict[str, Any]], title: str) -> Path:
    """Test accuracy vs measured latency (log x): baselines, hwnas and random winners (per seed faint, mean bold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from hwnas.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for fam, marker, shade in (("small", "s", "dimgrey"), ("large", "D", "darkgrey")):
        rows = [b for b in baselines if b["family"] == fam]
        if not rows:
            continue
        ax.errorbar(
            [b["measured_ms"] for b in rows],
            [100 * b["test_acc_mean"] for b in rows],
            yerr=[100 * b["test_acc_std"] for b in rows],
            fmt=marker + "-",
            color=shade,
            capsize=3,
            label=f"torchvision mobilenet_v3_{fam} ×0.5/0.75/1.0",
        )
        for b in rows:
            ax.annotate(
                f"×{b['width']:g}",
                (b["measured_ms"], 100 * b["test_acc_mean"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, -9),
            )
    for key, color, label in (
        ("hwnas", "tab:red", "hwnas evolution winners"),
        ("random", "tab:blue", "random-search winners"),
    ):
        xs, ys, es = [], [], []
        for b in budgets:
            side = b[key]
            ax.scatter(
                [w["measured_ms"] for w in side["winners"]],
                [100 * w["test_acc"] for w in side["winners"]],
                color=color,
                alpha=0.3,
                s=14,
            )
            xs.append(side["measured_ms"])
            ys.append(100 * side["test_acc_mean"])
            es.append(100 * side["test_acc_std"])
        ax.errorbar(xs, ys, yerr=es, fmt="o", color=color, capsize=3, label=label + " (mean ± std; faint: seeds)")
        if key == "hwnas":
            for b, x, y in zip(budgets, xs, ys):
                ax.annotate(
                    f"≤{b['budget_ms']:.2f} ms LUT",
                    (x, y),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(4, 4),
                    color=color,
                )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set(xlabel="measured latency, ms (cpu-ort-1t, batch 1; log scale)", ylabel="test accuracy, %")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
