#!/usr/bin/env python3
"""Time an hwnas latency bundle on this device. Needs only python3, numpy and onnxruntime (no hwnas, no torch).

    python3 measure_bundle.py BUNDLE_DIR [--out results.csv] [--threads N] [--rounds R] [--repeats N] [--warmup-s S]
                                         [--clock thread|wall] [--seed S]

All timing is done by protocol.py, which `hwnas bundle` copies next to this script byte for byte from
hwnas/latency/protocol.py — the code `hwnas profile` times its tables with: a global warm-up, blocks and calibration
subnets in the same interleaved passes (each in a fresh random order), per-pass speed normalisation, medians,
re-measured noisy items, then `calib_passes` more passes among the calibration subnets. Its settings are the device
profile's, written into manifest.json by `hwnas bundle`; the options above override them. This script only loads the
models and writes results.csv (key, ms_p50, ms_p90, cv, n) and results.meta.json: bring both back and run
`hwnas profile --import results.csv --device NAME`. ExecuTorch (.pte) bundles: measure_bundle_pte.py.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # protocol.py lies next to this script
from protocol import Protocol, run_table_protocol  # noqa: E402

log = logging.getLogger("measure_bundle")
Run = Callable[[], object]
Loader = Callable[[str, Sequence[dict[str, Any]], int], dict[str, Run]]
PROFILE_FIELDS = ("warmup_s", "warmup", "rounds", "repeats", "max_cv", "remeasure", "calib_passes", "clock")


def parse_args(argv: Sequence[str], description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("bundle", help="bundle directory (holds manifest.json)")
    p.add_argument("--out", default="results.csv", help="results CSV (default results.csv)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: the profile's)")
    p.add_argument("--rounds", type=int, help="interleaved timed passes (default: the profile's)")
    p.add_argument("--repeats", type=int, help="timed runs per model per pass (default: the profile's)")
    p.add_argument("--warmup-s", type=float, help="seconds of global warm-up (default: the profile's)")
    p.add_argument("--clock", choices=("thread", "wall"), help="thread CPU time (1 thread only) or wall time")
    p.add_argument("--seed", type=int, default=0, help="order of the passes")
    return p.parse_args(list(argv))


def load_sessions(bundle: str, items: Sequence[dict[str, Any]], threads: int) -> dict[str, Run]:
    """One onnxruntime CPU session per model, with a fixed random input."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    rng = np.random.default_rng(0)
    runs: dict[str, Run] = {}
    for item in items:
        session = ort.InferenceSession(
            os.path.join(bundle, item["file"]), sess_options=so, providers=["CPUExecutionProvider"]
        )
        feed = {session.get_inputs()[0].name: rng.standard_normal(item["input_shape"]).astype(np.float32)}
        runs[item["key"]] = _runner(session, feed)
    return runs


def _runner(session: Any, feed: dict[str, Any]) -> Run:
    return lambda: session.run(None, feed)


def onnx_versions() -> dict[str, str]:
    import numpy as np
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "numpy": np.__version__}


def settings(manifest: dict[str, Any], args: argparse.Namespace) -> tuple[Protocol, int]:
    """The manifest's protocol (bundles older than its "protocol" entry: the profile's fields) with the overrides."""
    profile = manifest["profile"]
    protocol = Protocol.from_dict(manifest.get("protocol") or profile)
    threads = args.threads if args.threads is not None else int(profile["threads"])
    overrides = {"rounds": args.rounds, "repeats": args.repeats, "warmup_s": args.warmup_s, "clock": args.clock}
    protocol = dataclasses.replace(protocol, **{k: v for k, v in overrides.items() if v is not None})
    if protocol.clock == "thread" and threads != 1:
        protocol = dataclasses.replace(protocol, clock="wall")  # other threads' work would not be counted
    return protocol, threads


def write_results(path: str, rows: dict[str, Any], meta: dict[str, Any]) -> None:
    """results.csv (the columns `hwnas profile --import` reads) and results.meta.json, each written atomically."""
    with open(path + ".tmp", "w", newline="") as fh:
        writer = csv.writer(fh)  # subnet keys contain commas: the csv module quotes them
        writer.writerow(["key", "ms_p50", "ms_p90", "cv", "n"])
        for key in sorted(rows):
            st = rows[key]
            writer.writerow([key, f"{st.p50_ms:.6f}", f"{st.p90_ms:.6f}", f"{st.cv:.6f}", st.n])
    os.replace(path + ".tmp", path)
    stem = path[:-4] if path.endswith(".csv") else path
    with open(stem + ".meta.json.tmp", "w") as fh:
        json.dump(meta, fh, indent=2)
    os.replace(stem + ".meta.json.tmp", stem + ".meta.json")


def measure_bundle(
    argv: Sequence[str],
    *,
    fmt: str,
    script: str,
    description: str,
    load: Loader,
    versions: Callable[[], dict[str, str]],
) -> int:
    """Load the bundle's models with `load`, time them with protocol.py, write the results; 0, or 2 on a bad bundle."""
    args = parse_args(argv, description)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with open(os.path.join(args.bundle, "manifest.json")) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        log.error("error: cannot read %s: %s", os.path.join(args.bundle, "manifest.json"), exc)
        return 2
    if manifest.get("kind") != "hwnas-latency-bundle":
        log.error("error: %s/manifest.json is not an hwnas latency bundle", args.bundle)
        return 2
    if manifest.get("format", "onnx") != fmt:
        log.error(
            "error: %s is a %s bundle, which %s does not time; run %s",
            args.bundle,
            manifest.get("format", "onnx"),
            script,
            manifest.get("script", "measure_bundle.py"),
        )
        return 2
    try:
        protocol, threads = settings(manifest, args)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("error: bad protocol settings in %s/manifest.json or options: %s", args.bundle, exc)
        return 2
    started = time.monotonic()
    items = manifest["items"]
    log.info("loading %d models", len(items))
    runs = load(args.bundle, items, threads)
    subnet_keys = {item["key"] for item in items if item["kind"] == "subnet"}
    log.info("timing %d blocks + %d calibration subnets: %s", len(runs) - len(subnet_keys), len(subnet_keys), protocol)
    stats = run_table_protocol(
        {k: r for k, r in runs.items() if k not in subnet_keys},
        {k: r for k, r in runs.items() if k in subnet_keys},
        protocol,
        rng=random.Random(args.seed),
        progress=sys.stderr.isatty(),
        desc="measure",
    )
    used = protocol.to_dict()
    del used["checkpoint_s"]
    meta = {
        "kind": "hwnas-bundle-results",
        "format": fmt,
        "script": script,
        "space": manifest["space"],
        "resolutions": manifest["resolutions"],
        "device": manifest["device"],
        "complete": manifest.get("complete", True),
        "protocol": used,
        "profile": {**manifest["profile"], "threads": threads, **{k: used[k] for k in PROFILE_FIELDS}},
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "versions": versions(),
        },
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
    }
    write_results(args.out, stats, meta)
    log.info("wrote %s (%d models) in %s s", args.out, len(stats), meta["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(
        measure_bundle(
            sys.argv[1:],
            fmt="onnx",
            script="measure_bundle.py",
            description=(__doc__ or "").split("\n\n")[0],
            load=load_sessions,
            versions=onnx_versions,
        )
    )
