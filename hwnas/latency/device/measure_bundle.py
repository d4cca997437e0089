#!/usr/bin/env python3
"""Time an hwnas latency bundle on this device. Needs only python3, numpy and onnxruntime (no hwnas, no torch).

    python3 measure_bundle.py BUNDLE_DIR [--out results.csv] [--threads N] [--rounds R] [--repeats N] [--warmup-s S]
                                         [--clock thread|wall] [--seed S]

All timing is done by protocol.py, which `hwnas bundle` copies next to this script byte for byte from
hwnas/latency/protocol.py — the code `hwnas profile` times its tables with: a global warm-up, blocks and calibration
subnets in the same interleaved passes (each in a fresh random order), per-pass speed normalisation, medians,
re-measured noisy items, then `calib_passes` more passes among the calibration subnets. A bundle made with
`--validate N` then times its held-out subnets as `hwnas latency validate` does: in chunks (bounded memory), each
interleaved with the drift references, with the protocol's whole-model passes. Its settings are the device
profile's, written into manifest.json by `hwnas bundle`; the options above override them. This script only loads the
models and writes results.csv (key, ms_p50, ms_p90, cv, n) and results.meta.json (the bundle's id and items, the
validation chunks and split halves, the CSV's SHA-256, and this CPU as machine.py names it): bring both back and run
`hwnas profile --import results.csv --device NAME`. ExecuTorch (.pte) bundles: measure_bundle_pte.py.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # protocol.py and machine.py lie next to this script
from machine import cpu_model, cpu_signature  # noqa: E402
from protocol import (  # noqa: E402
    CALIB_WARMUP_S,
    Protocol,
    TimingStats,
    for_whole_models,
    pass_speeds,
    run_passes,
    run_table_protocol,
    split_half_p50,
    stats_from_passes,
)

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
    """results.csv (the columns `hwnas profile --import` reads) and results.meta.json (with the CSV's SHA-256, so the
    import knows the pair belongs together), each written atomically."""
    with open(path + ".tmp", "w", newline="") as fh:
        writer = csv.writer(fh)  # subnet keys contain commas: the csv module quotes them
        writer.writerow(["key", "ms_p50", "ms_p90", "cv", "n"])
        for key in sorted(rows):
            st = rows[key]
            writer.writerow([key, f"{st.p50_ms:.6f}", f"{st.p90_ms:.6f}", f"{st.cv:.6f}", st.n])
    with open(path + ".tmp", "rb") as fh:
        meta = {**meta, "results_sha256": hashlib.sha256(fh.read()).hexdigest()}
    os.replace(path + ".tmp", path)
    stem = path[:-4] if path.endswith(".csv") else path
    with open(stem + ".meta.json.tmp", "w") as fh:
        json.dump(meta, fh, indent=2)
    os.replace(stem + ".meta.json.tmp", stem + ".meta.json")


def time_validation(
    bundle: str,
    manifest: dict[str, Any],
    protocol: Protocol,
    *,
    load: Loader,
    threads: int,
    rng: random.Random,
) -> tuple[dict[str, TimingStats], dict[str, Any]]:
    """Time the held-out subnets as `hwnas latency validate` does: chunk by chunk (loaded, timed, released), each chunk
    interleaved with the drift references (loaded once) in the protocol's whole-model passes. Returns the stats (a
    reference's key gets "@<chunk>") and what the import needs besides: chunk of each subnet, split halves."""
    items = manifest["items"]
    heldout = [item for item in items if item["kind"] == "heldout"]
    settings = manifest.get("validation") or {}
    chunk = int(settings.get("chunk") or 40)
    whole = for_whole_models(protocol, warmup_s=min(CALIB_WARMUP_S, protocol.warmup_s), passes=settings.get("passes"))
    refs = load(bundle, [item for item in items if item["kind"] == "reference"], threads)
    stats: dict[str, TimingStats] = {}
    chunk_of: dict[str, int] = {}
    halves: dict[str, list[float]] = {}
    starts = range(0, len(heldout), chunk)
    for index, start in enumerate(starts):
        part = load(bundle, heldout[start : start + chunk], threads)
        runs = {**part, **{f"{key}@{index}": run for key, run in refs.items()}}
        log.info(
            "validation chunk %d/%d: %d held-out subnets + %d references", index + 1, len(starts), len(part), len(refs)
        )
        passes = run_passes(runs, whole, rng=rng, progress=sys.stderr.isatty(), desc=f"validate {index + 1}")
        speeds = pass_speeds(passes)
        for key, recs in passes.items():
            stats[key] = stats_from_passes(recs, speeds)
            if key in part:
                chunk_of[key] = index
                if len(recs) >= 2:
                    halves[key] = list(split_half_p50(recs, speeds))
        del part, runs  # release this chunk's sessions before loading the next
    used = whole.to_dict()
    del used["checkpoint_s"]
    return stats, {**settings, "chunks": len(starts), "chunk_of": chunk_of, "halves_ms": halves, "protocol": used}


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
    table_items = [item for item in items if item["kind"] in ("block", "subnet")]
    log.info("loading %d models", len(table_items))
    runs = load(args.bundle, table_items, threads)
    subnet_keys = {item["key"] for item in table_items if item["kind"] == "subnet"}
    log.info("timing %d blocks + %d calibration subnets: %s", len(runs) - len(subnet_keys), len(subnet_keys), protocol)
    rng = random.Random(args.seed)
    stats = run_table_protocol(
        {k: r for k, r in runs.items() if k not in subnet_keys},
        {k: r for k, r in runs.items() if k in subnet_keys},
        protocol,
        rng=rng,
        progress=sys.stderr.isatty(),
        desc="measure",
    )
    del runs  # release the table's sessions before the held-out subnets are loaded
    validation = None
    if any(item["kind"] == "heldout" for item in items):
        timed, validation = time_validation(args.bundle, manifest, protocol, load=load, threads=threads, rng=rng)
        stats.update(timed)
    used = protocol.to_dict()
    del used["checkpoint_s"]
    meta = {
        "kind": "hwnas-bundle-results",
        "format": fmt,
        "script": script,
        "bundle": {"id": manifest.get("bundle_id"), "mode": manifest.get("mode", "blocks")},
        "space": manifest["space"],
        "resolutions": manifest["resolutions"],
        "device": manifest["device"],
        "complete": manifest.get("complete", True),
        "protocol": used,
        "profile": {**manifest["profile"], "threads": threads, **{k: used[k] for k in PROFILE_FIELDS}},
        "items": [{"key": item["key"], "kind": item["kind"]} for item in items],
        "validation": validation,
        "machine": {
            "cpu": cpu_model(),
            "cpu_signature": cpu_signature(),
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
