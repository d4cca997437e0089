"""Specializing an OFA MobileNetV3 supernet: `hwnas import-ofa` → predictor-scored search → export, against OFA's own finder.

OFA's trained files cannot be fetched here, so the supernet and its accuracy predictor are random-weight files written
by OFA's own classes (PyPI `ofa`, `bench/ofa_random.py`): speed and correctness do not depend on the weights' values,
accuracies do (they are random and not reported as results). Per budget, the same search is run two ways, alternating:

- hwnas: `hwnas search --scorer predictor` in-process on the imported run and the committed `mbv3` cpu-ort-1t table
  (evolution, population 100 × 500 generations, the run's imported predictor scoring whole generations);
- OFA: `ofa.nas.search_algorithm.EvolutionFinder` with OFA's `AccuracyPredictor` holding the *same* predictor weights and
  an efficiency predictor that sums the *same* table's calibrated per-layer latencies per candidate (OFA's
  `get_efficiency(arch_dict)` protocol), population 100 × 500 generations, OFA's default rates.

Reported: import seconds, search seconds per budget (the evolution itself on both sides, and hwnas's whole command),
their ratio (median over repeats), each winner's predicted latency against its budget, and the export of the middle
budget's winner (ONNX parity, measured vs predicted latency on cpu-ort-1t) on a generated 1000-class ImageNet-style
folder.

    .venv/bin/python bench/bench_ofa_specialize.py [--repeats 3] [--quick]

Writes bench/results/ofa_specialize.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hwnas.atomic import atomic_write_json  # noqa: E402
from hwnas.cli import main as hwnas_main  # noqa: E402
from hwnas.latency.lut import load_lut  # noqa: E402
from hwnas.machine import machine_info, package_versions  # noqa: E402
from hwnas.search import gene_latency_from_lut, genome_of  # noqa: E402
from hwnas.space import Arch, get_space  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ofa_random import arch_string, ofa_predictor, ofa_supernet, save_released  # noqa: E402
from results_paths import repo_relative  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3.csv"
BUDGET_QUANTILES = (0.1, 0.3, 0.6)  # of the latency of 2,000 uniform samples: tight, binding, loose


class LutEfficiency:
    """OFA's efficiency-predictor protocol (`get_efficiency(arch_dict)`) over the calibrated hwnas table's numbers."""

    def __init__(self, latency) -> None:  # type: ignore[no-untyped-def]
        g = latency.genome
        self.resolutions = list(g.space.resolutions)
        self.fixed = {res: float(latency.fixed_ms[r]) for r, res in enumerate(self.resolutions)}
        self.rows: dict[tuple[int, int, int, int], float] = {}
        for r, res in enumerate(self.resolutions):
            for slot in range(g.n_slots):
                for c, choice in enumerate(g.choices[int(g.slot_stage[slot])]):
                    self.rows[(res, slot, choice.kernel, choice.expand)] = float(latency.slot_ms[r, slot, c])

    def get_efficiency(self, arch: dict) -> float:
        res = arch["image_size"]
        total = self.fixed[res]
        for s, depth in enumerate(arch["d"]):
            for j in range(depth):
                i = 4 * s + j
                total += self.rows[(res, i, arch["ks"][i], arch["e"][i])]
        return total


def run_ofa(
    predictor: torch.nn.Module, efficiency: LutEfficiency, budget_ms: float, *, generations: int, seed: int
) -> dict:
    from ofa.nas.search_algorithm import EvolutionFinder

    random.seed(seed)  # OFA draws from the global RNGs only
    np.random.seed(seed)
    finder = EvolutionFinder(efficiency, predictor, population_size=100, max_time_budget=generations)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        _, best = finder.run_evolution_search(budget_ms)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "accuracy": float(best[0]),
        "predicted_ms": float(best[2]),
        "arch": arch_string(best[1]),
    }


def run_hwnas(run: Path, budget_ms: float, out: Path, *, generations: int, seed: int) -> dict:
    start = time.perf_counter()
    code = hwnas_main(
        [
            "search",
            "--run",
            str(run),
            "--lut",
            str(LUT),
            "--budget-ms",
            f"{budget_ms:.6f}",
            "--scorer",
            "predictor",
            "--generations",
            str(generations),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--force",
            "--json",
        ]
    )
    wall = time.perf_counter() - start
    assert code == 0
    result = json.loads((out / "search.json").read_text())
    return {
        "seconds": result["seconds"],
        "command_seconds": wall,
        "accuracy": result["accuracy"],
        "predicted_ms": result["predicted_ms"],
        "arch": result["arch"],
        "evaluated": result["evaluated"],
    }


def imagenet_folder(root: Path, classes: int = 1000) -> Path:
    """One small random image per class in train/ and val/: enough to run export's steps, not to measure accuracy."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)).save(folder / "0.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 generations, 1 repeat")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ofa_specialize.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generations, repeats = (50, 1) if args.quick else (500, args.repeats)
    space = get_space("mbv3")
    latency = gene_latency_from_lut(load_lut(LUT, space=space), space)
    probe = genome_of(space).sample(2000, np.random.default_rng(0))
    budgets = [round(float(np.quantile(latency(probe), q)), 4) for q in BUDGET_QUANTILES]
    work = Path(tempfile.mkdtemp(prefix="hwnas-ofa-specialize-"))

    ckpt = save_released(ofa_supernet(1.0, seed=0), work / "ofa_mbv3_d234_e346_k357_w1.0")
    theirs = ofa_predictor(seed=0)
    torch.save(theirs.state_dict(), work / "acc_predictor.pth")
    start = time.perf_counter()
    assert (
        hwnas_main(
            [
                "import-ofa",
                str(ckpt),
                "--out",
                str(work / "run"),
                "--predictor",
                str(work / "acc_predictor.pth"),
                "--json",
            ]
        )
        == 0
    )
    import_seconds = time.perf_counter() - start

    efficiency = LutEfficiency(latency)
    rows = []
    for budget in budgets:
        ofa_runs, hw_runs = [], []
        for rep in range(repeats):  # alternate, so drift on a shared machine hits both sides alike
            ofa_runs.append(run_ofa(theirs, efficiency, budget, generations=generations, seed=rep))
            hw_runs.append(run_hwnas(work / "run", budget, work / "search", generations=generations, seed=rep))
        for r in ofa_runs + hw_runs:
            assert r["predicted_ms"] <= budget + 1e-9, (budget, r)
        ofa_winner_ms = latency(genome_of(space).encode([Arch.parse(ofa_runs[0]["arch"])]))[0]
        assert abs(ofa_winner_ms - ofa_runs[0]["predicted_ms"]) < 1e-6  # the same latencies on both sides
        med_ofa = statistics.median(r["seconds"] for r in ofa_runs)
        med_hw = statistics.median(r["seconds"] for r in hw_runs)
        med_cmd = statistics.median(r["command_seconds"] for r in hw_runs)
        rows.append(
            {
                "budget_ms": budget,
                "ofa_seconds_median": round(med_ofa, 4),
                "hwnas_search_seconds_median": round(med_hw, 4),
                "hwnas_command_seconds_median": round(med_cmd, 4),
                "speedup_search": round(med_ofa / med_hw, 2),
                "speedup_command": round(med_ofa / med_cmd, 2),
                "within_budget": True,
                "hwnas_best_predicted_accuracy": max(r["accuracy"] for r in hw_runs),
                "ofa_best_predicted_accuracy": max(r["accuracy"] for r in ofa_runs),
                "ofa_runs": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in ofa_runs],
                "hwnas_runs": [
                    {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in hw_runs
                ],
            }
        )
        print(
            f"budget {budget:.3f} ms: ofa {med_ofa:.3f} s, hwnas search {med_hw:.3f} s (command {med_cmd:.2f} s) "
            f"-> {med_ofa / med_hw:.1f}x; accuracy hwnas {rows[-1]['hwnas_best_predicted_accuracy']:.4f} "
            f"ofa {rows[-1]['ofa_best_predicted_accuracy']:.4f}"
        )

    winner = rows[1]["hwnas_runs"][0]["arch"]
    data = imagenet_folder(work / "imagenet")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = hwnas_main(
            [
                "export",
                "--run",
                str(work / "run"),
                "--arch",
                winner,
                "--data-dir",
                str(data),
                "--out",
                str(work / "export"),
                "--test-images",
                "200",
                "--parity-images",
                "200",
                "--json",
            ]
        )
    assert code == 0
    export = json.loads(printed.getvalue())
    export_seconds = time.perf_counter() - start

    payload = {
        "benchmark": "ofa_specialize",
        "setup": {
            "space": "mbv3",
            "width": 1.0,
            "weights": "random (OFA's own classes, bench/ofa_random.py)",
            "predictor": "OFA AccuracyPredictor 400x3 over MobileNetArchEncoder (128/160/192/224), same weights "
            "on both sides",
            "latency_table": repo_relative(LUT),
            "population": 100,
            "generations": generations,
            "repeats": repeats,
            "budget_rule": f"quantiles {list(BUDGET_QUANTILES)} of 2,000 uniform samples' predicted latency",
            "ofa": "ofa.nas.search_algorithm.EvolutionFinder (arch mutate 0.1, resolution mutate 0.5)",
            "hwnas": "hwnas search --scorer predictor (evolution, mutate 0.1 for every gene)",
            "ofa_version": package_versions(("ofa",))["ofa"],
            "threads": {"torch": 1},
        },
        "import_seconds": round(import_seconds, 3),
        "budgets": rows,
        "speedup_min": min(r["speedup_search"] for r in rows),
        "all_within_budget": all(r["within_budget"] for r in rows),
        "export": {
            "arch": winner,
            "seconds": round(export_seconds, 1),
            "max_abs_diff": export["max_abs_diff"],
            "top1_agreement": export["top1_agreement"],
            "predicted_ms": export["predicted_ms"],
            "measured_ms": export["measured_ms"],
            "machine_speed_factor": export["machine_speed_factor"],
            "note": "test accuracy of random weights on random images is meaningless and not reported",
        },
        "machine": machine_info(),
    }
    atomic_write_json(args.out, payload)
    print(
        f"import {import_seconds:.2f} s; export {export_seconds:.1f} s: parity {export['max_abs_diff']:.2e}, "
        f"measured {export['measured_ms']} ms vs predicted {export['predicted_ms']} ms"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
