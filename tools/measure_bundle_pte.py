#!/usr/bin/env python3
"""Time an hwnas ExecuTorch (.pte) latency bundle on the device it runs on. Needs only the ExecuTorch runtime (the
`executorch` Python package, which brings torch for tensors), not hwnas.

    python3 measure_bundle_pte.py BUNDLE_DIR [--out results.csv] [--threads N] [--rounds R] [--repeats N] [--warmup-s S]

Protocol (the same as hwnas' own harness and measure_bundle.py): a global warm-up over every program, then R passes
over all programs, each pass in a fresh random order, each program run `warmup` times untimed and `repeats` times
timed; per program the median of the per-pass medians is kept; programs whose across-pass CV exceeds max_cv get extra
passes. XNNPACK's threadpool is resized to --threads (default: the profile's) before any program is loaded. Writes
results.csv (key, ms_p50, ms_p90, cv, n) and results.meta.json; bring both back and run
`hwnas profile --import results.csv --device NAME`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="bundle directory (holds manifest.json)")
    p.add_argument("--out", default="results.csv", help="results CSV (default results.csv)")
    p.add_argument("--threads", type=int, help="XNNPACK threads (default: the profile's)")
    p.add_argument("--rounds", type=int, help="interleaved timed passes (default: the profile's)")
    p.add_argument("--repeats", type=int, help="timed runs per program per pass (default: the profile's)")
    p.add_argument("--warmup-s", type=float, help="seconds of global warm-up (default: the profile's)")
    p.add_argument("--clock", choices=("thread", "wall"), help="thread CPU time (1 thread only) or wall time")
    p.add_argument("--seed", type=int, default=0, help="order of the passes")
    return p.parse_args(argv)


def load_methods(bundle: str, manifest: dict, threads: int) -> dict:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import executorch.extension.pybindings.portable_lib as lib
        from executorch.runtime import Runtime
    if lib._threadpool_get_thread_count() != threads:
        lib._unsafe_reset_threadpool(threads)  # before any method is loaded: loaded methods keep the old pool
    runtime = Runtime.get()
    gen = torch.Generator().manual_seed(0)
    runs = {}
    for n, item in enumerate(manifest["items"], 1):
        program = runtime.load_program(os.path.join(bundle, item["file"]))
        method = program.load_method("forward")
        inputs = (torch.randn(item["input_shape"], generator=gen),)
        runs[item["key"]] = (lambda m=method, x=inputs, p=program: m.execute(x))
        print(f"\rloading {n}/{len(manifest['items'])}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return runs


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_pass(run, warmup: int, repeats: int, clock) -> tuple:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        start = clock()
        run()
        samples.append((clock() - start) / 1e6)
    return statistics.median(samples), percentile(samples, 90), repeats


def measure(runs: dict, cfg: dict, clock, rng: random.Random) -> dict:
    keys = list(runs)
    start = clock()
    while True:  # global warm-up: every program at least once, then until warmup_s has passed
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
        med = [p[0] for p in passes[key]]
        return statistics.pstdev(med) / statistics.fmean(med) if len(med) > 1 else 0.0

    for _ in range(cfg["rounds"]):
        sweep(list(runs))
    for _ in range(cfg["remeasure"]):
        noisy = [key for key in runs if cv(key) > cfg["max_cv"]]
        if not noisy:
            break
        sweep(noisy)
    return {key: (statistics.median([p[0] for p in recs]), statistics.median([p[1] for p in recs]), cv(key),
                  sum(p[2] for p in recs)) for key, recs in passes.items()}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with open(os.path.join(args.bundle, "manifest.json")) as fh:
        manifest = json.load(fh)
    if manifest.get("kind") != "hwnas-latency-bundle" or manifest.get("format") != "pte":
        print(f"error: {args.bundle}/manifest.json is not an hwnas .pte latency bundle (ONNX bundles: "
              "measure_bundle.py)", file=sys.stderr)
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
    runs = load_methods(args.bundle, manifest, cfg["threads"])
    results = measure(runs, cfg, clock, random.Random(args.seed))
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("key,ms_p50,ms_p90,cv,n\n")
        for key in sorted(results):
            p50, p90, c, n = results[key]
            fh.write(f"{key},{p50:.6f},{p90:.6f},{c:.6f},{n}\n")
    os.replace(tmp, args.out)
    from importlib.metadata import version

    meta = {"kind": "hwnas-bundle-results", "format": "pte", "space": manifest["space"],
            "resolutions": manifest["resolutions"], "device": manifest["device"], "complete": manifest.get("complete"),
            "profile": {**prof, **{k: cfg[k] for k in ("threads", "rounds", "repeats", "warmup_s", "clock")}},
            "machine": {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
                        "cpu_count": os.cpu_count(), "versions": {"executorch": version("executorch")}},
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1)}
    stem = args.out[:-4] if args.out.endswith(".csv") else args.out
    with open(stem + ".meta.json.tmp", "w") as fh:
        json.dump(meta, fh, indent=2)
    os.replace(stem + ".meta.json.tmp", stem + ".meta.json")
    print(f"wrote {args.out} ({len(results)} programs) in {meta['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
