#!/usr/bin/env python3
"""Time an hwnas latency bundle on the device it runs on. Needs only python3, numpy and onnxruntime (not hwnas).

    python3 measure_bundle.py BUNDLE_DIR [--out results.csv] [--threads N] [--rounds R] [--repeats N] [--warmup-s S]

Protocol (the same as hwnas' own harness): a global warm-up over every model, then R passes over all models, each pass
in a fresh random order, each model run `warmup` times untimed and `repeats` times timed; per model the median of the
per-pass medians is kept; models whose across-pass CV exceeds max_cv get extra passes. Defaults come from the profile
stored in the bundle's manifest.json. Writes results.csv (key, ms_p50, ms_p90, cv, n) and results.meta.json; bring both
back and run `hwnas profile --import results.csv --device NAME`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import sys
import time

import numpy as np
import onnxruntime as ort


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="bundle directory (holds manifest.json)")
    p.add_argument("--out", default="results.csv", help="results CSV (default results.csv)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: the profile's)")
    p.add_argument("--rounds", type=int, help="interleaved timed passes (default: the profile's)")
    p.add_argument("--repeats", type=int, help="timed runs per model per pass (default: the profile's)")
    p.add_argument("--warmup-s", type=float, help="seconds of global warm-up (default: the profile's)")
    p.add_argument("--clock", choices=("thread", "wall"), help="thread CPU time (1 thread only) or wall time")
    p.add_argument("--seed", type=int, default=0, help="order of the passes")
    return p.parse_args(argv)


def load_sessions(bundle: str, manifest: dict, threads: int) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    runs = {}
    rng = np.random.default_rng(0)
    for n, item in enumerate(manifest["items"], 1):
        session = ort.InferenceSession(os.path.join(bundle, item["file"]), sess_options=so,
                                       providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: rng.standard_normal(item["input_shape"]).astype(np.float32)}
        runs[item["key"]] = (lambda s=session, f=feed: s.run(None, f))
        print(f"\rloading {n}/{len(manifest['items'])}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return runs


def time_pass(run, warmup: int, repeats: int, clock) -> tuple[float, float, int]:
    for _ in range(warmup):
        run()
    samples = np.empty(repeats)
    for i in range(repeats):
        start = clock()
        run()
        samples[i] = (clock() - start) / 1e6
    return float(np.median(samples)), float(np.percentile(samples, 90)), repeats


def measure(runs: dict, cfg: dict, clock, rng: random.Random) -> dict:
    keys = list(runs)
    start = clock()
    while True:  # global warm-up: every model at least once, then until warmup_s has passed
        rng.shuffle(keys)
        for key in keys:
            runs[key]()
        if (clock() - start) / 1e9 >= cfg["warmup_s"]:
            break
    passes = {key: [] for key in runs}

    def sweep(todo: list) -> None:
        rng.shuffle(todo)
        for n, key in enumerate(todo, 1):
            passes[key].append(time_pass(runs[key], cfg["warmup"], cfg["repeats"], clock))
            if n % 20 == 0 or n == len(todo):
                print(f"\rpass: {n}/{len(todo)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

    def cv(key: str) -> float:
        med = np.array([p[0] for p in passes[key]])
        return float(med.std() / med.mean()) if len(med) > 1 else 0.0

    for _ in range(cfg["rounds"]):
        sweep(list(runs))
    for _ in range(cfg["remeasure"]):
        noisy = [key for key in runs if cv(key) > cfg["max_cv"]]
        if not noisy:
            break
        sweep(noisy)
    return {key: (float(np.median([p[0] for p in recs])), float(np.median([p[1] for p in recs])), cv(key),
                  sum(p[2] for p in recs)) for key, recs in passes.items()}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with open(os.path.join(args.bundle, "manifest.json")) as fh:
        manifest = json.load(fh)
    if manifest.get("kind") != "hwnas-latency-bundle":
        print(f"error: {args.bundle}/manifest.json is not an hwnas latency bundle", file=sys.stderr)
        return 2
    prof = dict(manifest["profile"])
    cfg = {"threads": args.threads or prof["threads"], "rounds": args.rounds or prof["rounds"],
           "repeats": args.repeats or prof["repeats"],
           "warmup_s": prof["warmup_s"] if args.warmup_s is None else args.warmup_s,
           "warmup": prof["warmup"], "max_cv": prof["max_cv"], "remeasure": prof["remeasure"],
           "clock": args.clock or prof.get("clock", "wall")}
    if cfg["clock"] == "thread" and cfg["threads"] != 1:
        cfg["clock"] = "wall"  # other threads' work would not be counted
    clock = time.thread_time_ns if cfg["clock"] == "thread" else time.perf_counter_ns
    started = time.monotonic()
    runs = load_sessions(args.bundle, manifest, cfg["threads"])
    results = measure(runs, cfg, clock, random.Random(args.seed))
    tmp = args.out + ".tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)  # subnet keys contain commas: the csv module quotes them
        writer.writerow(["key", "ms_p50", "ms_p90", "cv", "n"])
        for key in sorted(results):
            p50, p90, c, n = results[key]
            writer.writerow([key, f"{p50:.6f}", f"{p90:.6f}", f"{c:.6f}", n])
    os.replace(tmp, args.out)
    meta = {"kind": "hwnas-bundle-results", "space": manifest["space"], "resolutions": manifest["resolutions"],
            "device": manifest["device"], "profile": {**prof, **{k: cfg[k] for k in ("threads", "rounds", "repeats",
                                                                                     "warmup_s", "clock")}},
            "machine": {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
                        "cpu_count": os.cpu_count(), "versions": {"onnxruntime": ort.__version__, "numpy": np.__version__}},
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1)}
    stem = args.out[:-4] if args.out.endswith(".csv") else args.out
    with open(stem + ".meta.json.tmp", "w") as fh:
        json.dump(meta, fh, indent=2)
    os.replace(stem + ".meta.json.tmp", stem + ".meta.json")
    print(f"wrote {args.out} ({len(results)} models) in {meta['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
