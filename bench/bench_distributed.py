"""torchrun on this machine: 1 process × 2 threads vs 2 gloo ranks × 1 thread, for a measured search and for training.

(a) Search: the same `hwnas search` (measured scorer, evolution, same seed, budget and effort) launched as one process
    with `--threads 2` and as `torchrun --nproc-per-node 2 ... --threads 1` (gloo; each rank measures its share of every
    batch). Rounds alternate which goes first, so drift on a shared machine hits both. Reported per launch: wall time
    (process start to exit, what a user waits) and the search's own seconds (search.json `seconds`: the strategy and its
    measurements, without start-up and loading); the winners and candidate scores of every launch are compared.
(b) Training: `hwnas train --mode bignas` for a few steps at the same global batch as 1 rank × 1 thread, 2 ranks × 1
    thread (gloo, gradients all-reduced) and 1 rank × 2 threads; img/s is the train summary's `img_per_s` (all ranks'
    images over the step time).

    .venv/bin/python bench/bench_distributed.py [--run runs/bignas-tiny] [--rounds 3] [--quick]

Writes bench/results/distributed.json (--quick: WORK/quick/distributed.json, never the committed file). Without a
trained run (--run missing) the search scores the supernet this bench trains in (b): a smoke test of the launch, whose
accuracies mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from results_paths import repo_relative  # noqa: E402

from hwnas.atomic import atomic_write_json  # noqa: E402
from hwnas.machine import cores_in_use, machine_info  # noqa: E402

RESULTS = HERE / "results"
HWNAS = [sys.executable, "-m", "hwnas"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(args: list[str], *, ranks: int) -> list[str]:
    """The command line for `hwnas ARGS` on `ranks` processes (`--` keeps torchrun off hwnas's own options)."""
    if ranks == 1:
        return [*HWNAS, *args]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks)]
    return [*torchrun, "--master-port", str(_free_port()), "-m", "hwnas", "--", *args]


def _timed(cmd: list[str], *, threads: int) -> tuple[float, dict[str, Any]]:
    """Wall seconds and the --json summary of one launch (CPU only; OMP threads as the ranks will use them)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


# ------------------------------------------------------------------------------------------------------- training

TRAIN_LAYOUTS = (("1rank_1thread", 1, 1), ("2ranks_1thread", 2, 1), ("1rank_2threads", 1, 2))


def bench_train(work: Path, *, steps: int, global_batch: int, rounds: int) -> tuple[dict[str, Any], Path]:
    """img/s of each layout, rounds interleaved (order rotated each round); returns the results and one trained run."""
    rates: dict[str, list[float]] = {name: [] for name, _, _ in TRAIN_LAYOUTS}
    walls: dict[str, list[float]] = {name: [] for name, _, _ in TRAIN_LAYOUTS}
    run = work / "train-1x1-r0"
    for r in range(rounds):
        shift = r % len(TRAIN_LAYOUTS)
        for name, ranks, threads in TRAIN_LAYOUTS[shift:] + TRAIN_LAYOUTS[:shift]:
            out = work / f"train-{ranks}x{threads}-r{r}"
            shutil.rmtree(out, ignore_errors=True)
            args = [
                "train",
                "--space",
                "mbv3-tiny",
                "--dataset",
                "synthetic",
                "--mode",
                "bignas",
                "--out",
                str(out),
                "--max-steps",
                str(steps),
                "--batch-size",
                str(global_batch // ranks),
                "--threads",
                str(threads),
                "--no-progress",
                "--json",
            ]
            wall, summary = _timed(_launch(args, ranks=ranks), threads=threads)
            rates[name].append(float(summary["img_per_s"]))
            walls[name].append(round(wall, 2))
            print(f"train {name}: {summary['img_per_s']} img/s ({wall:.1f} s wall)", flush=True)
    med = {name: statistics.median(v) for name, v in rates.items()}
    base = med["1rank_1thread"]
    return {
        "setup": {"mode": "bignas", "space": "mbv3-tiny", "dataset": "synthetic", "steps": steps},
        "global_batch": global_batch,
        "img_per_s": {name: round(v, 1) for name, v in med.items()},
        "img_per_s_rounds": rates,
        "wall_s_rounds": walls,
        "speedup_vs_1rank_1thread": {name: round(v / base, 3) for name, v in med.items()},
        "two_ranks_vs_two_threads": round(med["2ranks_1thread"] / med["1rank_2threads"], 3),
    }, run


# --------------------------------------------------------------------------------------------------------- search

SEARCH_LAYOUTS = (("1rank_2threads", 1, 2), ("2ranks_1thread", 2, 1))


def _budget(lut: Path, share: float) -> float:
    from hwnas.latency.lut import load_lut
    from hwnas.search import gene_latency_from_lut

    table = load_lut(lut)
    lat = gene_latency_from_lut(table, table.space())
    lo, hi = float(lat.min_ms()[0]), float(lat.max_ms()[0])
    return round(lo + share * (hi - lo), 5)


def _outcome(out: Path) -> dict[str, Any]:
    import pandas as pd

    saved = json.loads((out / "search.json").read_text())
    candidates = pd.read_csv(out / "candidates.csv")
    return {"arch": saved["arch"], "candidates": candidates[["arch", "accuracy"]].values.tolist()}


def bench_search(work: Path, *, run: Path, lut: Path, effort: dict[str, int], rounds: int) -> dict[str, Any]:
    budget = _budget(lut, 0.4)
    walls: dict[str, list[float]] = {name: [] for name, _, _ in SEARCH_LAYOUTS}
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in SEARCH_LAYOUTS}
    outcomes: list[tuple[str, dict[str, Any]]] = []
    for r in range(rounds):
        for name, ranks, threads in SEARCH_LAYOUTS if r % 2 == 0 else SEARCH_LAYOUTS[::-1]:
            out = work / f"search-{ranks}x{threads}-r{r}"
            shutil.rmtree(out, ignore_errors=True)
            args = ["search", "--run", str(run), "--lut", str(lut), "--budget-ms", str(budget), "--out", str(out)]
            args += ["--evaluations", str(effort["evaluations"]), "--population", str(effort["population"])]
            args += ["--val-images", str(effort["val_images"]), "--calib-images", str(effort["calib_images"])]
            args += ["--seed", "0", "--threads", str(threads), "--device", "cpu", "--json"]
            wall, summary = _timed(_launch(args, ranks=ranks), threads=threads)
            assert summary["world_size"] == ranks, summary
            walls[name].append(round(wall, 2))
            seconds[name].append(float(summary["seconds"]))
            outcomes.append((name, _outcome(out)))
            print(f"search {name}: {wall:.1f} s wall, {summary['seconds']:.1f} s searching -> {summary['arch']}")
    first = outcomes[0][1]
    same_winner = all(o["arch"] == first["arch"] for _, o in outcomes)
    same_scores = all(o["candidates"] == first["candidates"] for _, o in outcomes)
    # different thread counts sum BN statistics in another order: a candidate may land one val image apart
    first_scores = dict(first["candidates"])
    diffs = [
        abs(acc - first_scores[arch]) for _, o in outcomes for arch, acc in o["candidates"] if arch in first_scores
    ]
    same_set = all({a for a, _ in o["candidates"]} == set(first_scores) for _, o in outcomes)
    wall_med = {name: statistics.median(v) for name, v in walls.items()}
    search_med = {name: statistics.median(v) for name, v in seconds.items()}
    one, two = SEARCH_LAYOUTS[0][0], SEARCH_LAYOUTS[1][0]
    return {
        "setup": {
            "run": repo_relative(run),
            "lut": repo_relative(lut),
            "budget_ms": budget,
            "strategy": "evolution",
            "seed": 0,
            **effort,
        },
        "wall_s": {name: round(v, 2) for name, v in wall_med.items()},
        "wall_s_rounds": walls,
        "search_s": {name: round(v, 2) for name, v in search_med.items()},
        "search_s_rounds": seconds,
        "speedup_wall": round(wall_med[one] / wall_med[two], 3),
        "speedup_search": round(search_med[one] / search_med[two], 3),
        "winner": first["arch"],
        "same_winner": same_winner,
        "same_candidate_scores": same_scores,
        "same_candidate_set": same_set,
        "candidates": len(first_scores),
        "scores_differing": sum(d > 0 for d in diffs),
        "max_score_diff": round(max(diffs, default=0.0), 6),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings, 2 rounds (smoke run; not the committed file)")
    p.add_argument("--run", type=Path, default=REPO / "runs" / "bignas-tiny", help="trained mbv3-tiny run to search")
    p.add_argument("--lut", type=Path, default=REPO / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per layout (default 3)")
    p.add_argument("--evaluations", type=int, default=48)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--val-images", type=int, default=1000)
    p.add_argument("--calib-images", type=int, default=128)
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--train-batch", type=int, default=64, help="global batch (each of 2 ranks takes half)")
    p.add_argument("--work", type=Path, default=Path("/tmp/hwnas-bench-distributed"))
    p.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/distributed.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 2
        args.evaluations, args.population, args.val_images, args.calib_images = 12, 6, 128, 32
        args.train_steps, args.train_batch = 4, 16
    if args.rounds < 2 or args.train_batch % 2:
        p.error("--rounds must be >= 2 (the layouts are interleaved) and --train-batch even (split over 2 ranks)")
    out = args.out or (args.work / "quick" / "distributed.json" if args.quick else RESULTS / "distributed.json")
    args.work.mkdir(parents=True, exist_ok=True)
    busy = cores_in_use(2.0)
    train, trained = bench_train(args.work, steps=args.train_steps, global_batch=args.train_batch, rounds=args.rounds)
    run = args.run if (args.run / "checkpoint.pt").is_file() else trained
    effort = {
        "evaluations": args.evaluations,
        "population": args.population,
        "val_images": args.val_images,
        "calib_images": args.calib_images,
    }
    search = bench_search(args.work, run=run, lut=args.lut, effort=effort, rounds=args.rounds)
    if run == trained:
        search["setup"]["note"] = (
            f"{repo_relative(args.run)} not found: searched the {args.train_steps}-step run of (b)"
        )
    payload = {
        "benchmark": "torchrun on one machine: 1 process x 2 threads vs 2 gloo ranks x 1 thread (search, training)",
        "quick": args.quick,
        "rounds": args.rounds,
        "cores_busy_before": busy,
        "search": search,
        "train": train,
        "machine": machine_info(),
    }
    atomic_write_json(out, payload)
    print(
        f"search: {search['speedup_wall']}x wall, {search['speedup_search']}x searching with 2 ranks; "
        f"same winner {search['same_winner']}, same scores {search['same_candidate_scores']} "
        f"({search['scores_differing']} launch-candidate scores differ, at most {search['max_score_diff']})"
    )
    print(f"train img/s: {train['img_per_s']}")
    print(f"wrote {out}")
    return 0 if search["same_winner"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
