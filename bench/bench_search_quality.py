"""Search quality on mbv3-tiny / Fashion-MNIST: evolution vs random search at the same number of measured evaluations.

For each of three budgets and each seed, three strategies get the same count of *measured* evaluations (extract from the
trained supernet, BN recalibration on train batches, accuracy on the run's val split):
  - random:     uniform feasible archs (bounded resampling, then repair), best val accuracy wins;
  - evolution:  constraint-aware evolution on measured accuracy;
  - evolution+predictor: 80% of the evaluations on random archs fit a ridge predictor (Kendall τ on held-out pairs),
                evolution runs on it, the remaining 20% measure its top candidates.
Every winner's predicted latency is checked against its budget, and winners are also measured on the test split (the
search selected on val). One shared scorer caches by arch string, so an arch met twice is measured once.

    flock /tmp/hwnas-heavy.lock .venv/bin/python bench/bench_search_quality.py --run runs/bignas-tiny \
        --lut latency_tables/cpu-ort-1t/mbv3-tiny.csv [--seeds 3] [--evaluations 30]

Writes bench/results/search_quality.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hwnas.atomic import atomic_write_json  # noqa: E402
from hwnas.latency.lut import load_lut  # noqa: E402
from hwnas.latency.predictor import LatencyPredictor  # noqa: E402
from hwnas.machine import machine_info  # noqa: E402
from hwnas.search import (
    EvolutionConfig,
    RandomConfig,
    evolve,
    gene_latency_from_lut,  # noqa: E402
    random_search,
)
from hwnas.search.predicted import predicted_evolution  # noqa: E402
from hwnas.search.scorer import ScorerConfig, scorer_for_run  # noqa: E402
from hwnas.train.checkpoint import load_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "bignas-tiny")
    parser.add_argument("--lut", type=Path, default=REPO / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=12)
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument(
        "--fractions", default="0.15,0.35,0.6", help="budgets as fractions of the [min, max] latency range"
    )
    parser.add_argument("--val-images", type=int, default=500)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calib-images", type=int, default=128)
    parser.add_argument("--strategies", default="random,evolution")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "search_quality.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    table = load_lut(args.lut)
    run = load_run(args.run)
    space = run.space
    latency = gene_latency_from_lut(table, space)
    exact = LatencyPredictor(table, space)
    lo, hi = latency.min_ms()[0], latency.max_ms()[0]
    budgets = [round(lo + float(f) * (hi - lo), 4) for f in args.fractions.split(",")]
    calib = dict(calib_batches=1, calib_batch_size=args.calib_images)
    val = scorer_for_run(run, cfg=ScorerConfig(**calib, val_images=args.val_images))
    test = scorer_for_run(run, cfg=ScorerConfig(**calib, val_images=args.test_images), split="test")
    wanted = args.strategies.split(",")
    n = args.evaluations
    per_budget = []
    for b_idx, budget in enumerate(budgets):
        rows: dict[str, list[dict[str, object]]] = {name: [] for name in wanted}
        for seed in range(args.seeds):

            def rng(k: int) -> np.random.Generator:
                return np.random.default_rng([seed, b_idx, k])

            found = {}
            if "random" in wanted:
                found["random"] = random_search(
                    space, val, latency, budget_ms=budget, cfg=RandomConfig(evaluations=n), rng=rng(0)
                )
            if "evolution" in wanted:
                found["evolution"] = evolve(
                    space,
                    val,
                    latency,
                    budget_ms=budget,
                    rng=rng(1),
                    cfg=EvolutionConfig(population=args.population, generations=10_000, max_evaluations=n),
                )
            if "evolution+predictor" in wanted:
                found["evolution+predictor"] = predicted_evolution(
                    space, val, latency, budget_ms=budget, measured=n, kind="ridge", rng=rng(2)
                )[0]
            for name, res in found.items():
                predicted = exact.predict(res.arch)
                assert predicted <= budget + 1e-9, (name, predicted, budget)
                rows[name].append(
                    {
                        "seed": seed,
                        "arch": str(res.arch),
                        "predicted_ms": round(predicted, 5),
                        "val_accuracy": res.accuracy,
                        "test_accuracy": test.accuracy(res.arch),
                        "evaluated": res.evaluated,
                        **({"tau": res.notes.get("tau")} if "tau" in res.notes else {}),
                    }
                )
                logging.info("budget %.4f seed %d %-20s val %.4f  %s", budget, seed, name, res.accuracy, res.arch)
        summary = {}
        for name, items in rows.items():
            v = np.array([r["val_accuracy"] for r in items], dtype=float)
            t = np.array([r["test_accuracy"] for r in items], dtype=float)
            summary[name] = {
                "val_mean": round(float(v.mean()), 5),
                "val_std": round(float(v.std(ddof=1)) if v.size > 1 else 0.0, 5),
                "test_mean": round(float(t.mean()), 5),
                "test_std": round(float(t.std(ddof=1)) if t.size > 1 else 0.0, 5),
                "max_predicted_ms": max(float(r["predicted_ms"]) for r in items),
            }
        per_budget.append({"budget_ms": budget, "summary": summary, "runs": rows})
    payload = {
        "benchmark": "search_quality",
        "setup": {
            "strategies": wanted,
            "run": str(args.run),
            "lut": str(args.lut),
            "space": space.name,
            "dataset": run.dataset,
            "seeds": args.seeds,
            "evaluations_per_search": n,
            "evolution_population": args.population,
            "val_images": args.val_images,
            "test_images": args.test_images,
            "calib_images": args.calib_images,
            "torch_threads": args.threads,
            "latency_range_ms": [round(lo, 5), round(hi, 5)],
            "budget_fractions": args.fractions,
        },
        "budgets": per_budget,
        "cache": {"val_hits": val.hits, "val_misses": val.misses},
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine_info(),
    }
    atomic_write_json(args.out, payload)
    for entry in per_budget:
        parts = [f"{k} {v['val_mean']:.4f}±{v['val_std']:.4f}" for k, v in entry["summary"].items()]
        print(f"budget {entry['budget_ms']} ms: " + ", ".join(parts))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
