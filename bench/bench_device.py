"""Real devices, measured here: (a) does a table built through a bundle match one `hwnas profile` builds, and (b) how
good are few-shot tables (a reference table + N whole-subnet timings) for a runtime that is not the reference's?

    flock /tmp/hwnas-heavy.lock .venv/bin/python bench/bench_device.py [--part a|b|all] [--mbv3] [--heldout N] \
        [--quick] [--cache-dir /tmp/hwnas-pte-cache]

(a) `mbv3` at 160 px on cpu-ort-1t, twice on this machine: `hwnas profile`, and the device path — `hwnas bundle
    --validate H` → bundle/measure_bundle.py run as a separate process (numpy + onnxruntime) → `hwnas profile --import`.
    Both tables are then graded on the same H held-out subnets (the bundle's own), timed once here with both tables'
    drift references, and the bundle table's report measured by the device script itself is recorded beside them.
(b) ExecuTorch + XNNPACK (cpu-et-xnnpack-1t) on `mbv3-tiny` at 32 px (and `mbv3` at 160 px with --mbv3): the reference
    is the onnxruntime table (cpu-ort-1t) built in the same run; a pool of 80 whole subnets (drawn as
    `hwnas bundle --whole-subnets` draws them) is timed on ExecuTorch in one chunk, then H held-out subnets in chunks,
    both with the ExecuTorch block table's drift references. For N = 10, 20, 40, 80 a few-shot table is fitted on the
    pool's first N subnets (`hwnas.latency.fewshot`) and graded on the held-out subnets against the full ExecuTorch
    block table (built in the same run) and FLOPs calibrated on the same N subnets, as measured and × speed factor.
    Targets (issue 29): with N = 40, τ ≥ 0.85 × the block table's τ and ≥ FLOPs' τ + 0.2.

Lowered .pte programs are cached in --cache-dir (shared with bench_executorch.py). Writes bench/results/device.json
(--quick: bench/results/device_quick.json, a smoke run on mbv3-tiny at 24 px with few subnets; ~20 min on 2 busy cores).

Cost on 2 cores: (a) a few minutes (exporting and timing ~250 mbv3 models twice); (b) on mbv3-tiny ~20 min the first
time (~330 programs to lower, in 2 processes), a minute with the cache; --mbv3 adds about as much again (whole mbv3
subnets lower in about the CPU time of tiny ones, and time longer). Each part's `seconds` in the results say what it
took.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from fidelity_json import report_dict
from results_paths import repo_relative

from hwnas.atomic import atomic_write_json
from hwnas.latency import LatencyPredictor, LatencyTable, load_profile
from hwnas.latency.bundle import SCRIPT, import_results, write_bundle
from hwnas.latency.calibrate import calibration_archs
from hwnas.latency.drift import Reference, reference_archs
from hwnas.latency.fewshot import fewshot_table
from hwnas.latency.fidelity import calibration_arch_strs, fidelity_report
from hwnas.latency.profiler import profile_space, table_meta
from hwnas.latency.runtime import make_runner
from hwnas.latency.validate import heldout_archs, measure_archs
from hwnas.machine import machine_info
from hwnas.space import Arch, SpaceSpec, get_space
from hwnas.stats import kendall_tau

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
log = logging.getLogger("bench_device")
NS = (10, 20, 40, 80)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _build(space: SpaceSpec, name: str, res: int, path: Path, *, runner: Any = None, calib: int | None = None) -> Any:
    started = time.monotonic()
    table = profile_space(
        space,
        load_profile(name),
        out_path=path,
        resolutions=(res,),
        calib_subnets=calib,
        runner=runner,
        resume=False,
        progress=sys.stderr.isatty(),
    )
    log.info("%s table of %s @%d: %d rows in %.0f s", name, space.name, res, len(table), time.monotonic() - started)
    return table


def part_a(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """`hwnas profile` vs bundle → measure_bundle.py → `hwnas profile --import`, same machine, same held-out subnets."""
    space = get_space(args.a_space)
    res, held_n = args.a_resolution, args.heldout_a
    profile = load_profile("cpu-ort-1t")
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    local = _build(space, profile.name, res, work / "a" / "profile" / f"{space.name}.csv")
    seconds["profile"] = round(time.monotonic() - t0, 1)
    bundle = work / "a" / "bundle"
    t0 = time.monotonic()
    write_bundle(space, profile, bundle, resolutions=(res,), validate=held_n, validate_seed=1)
    seconds["bundle"] = round(time.monotonic() - t0, 1)
    results = work / "a" / "results.csv"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(bundle / SCRIPT), str(bundle), "--out", str(results)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"measure_bundle.py failed: {proc.stderr[-2000:]}")
    seconds["device_script"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    imported = import_results(results, device="cpu-ort-1t-bundle", out_dir=work / "a" / "tables")
    seconds["import"] = round(time.monotonic() - t0, 1)
    assert imported.fidelity is not None
    tables = {"profile": local, "bundle": imported.table}
    if calibration_arch_strs(local) != calibration_arch_strs(imported.table):
        raise SystemExit("the profile and the bundle drew different calibration subnets: not comparable")
    held = heldout_archs(space, held_n, resolutions=(res,), exclude=calibration_arch_strs(local), seed=1)
    if {str(a) for a in held} != {r["arch"] for r in imported.fidelity.records}:
        raise SystemExit("the bundle's held-out subnets are not the ones validate draws")
    refs = {name: reference_archs(t, resolutions=(res,)) for name, t in tables.items()}
    union = list(dict.fromkeys(r.arch for rs in refs.values() for r in rs))
    t0 = time.monotonic()
    measured = measure_archs(
        space, held, profile, runner=make_runner(profile), chunk=40, references=union, progress=sys.stderr.isatty()
    )
    seconds["validate_here"] = round(time.monotonic() - t0, 1)
    out: dict[str, Any] = {
        "space": space.name,
        "resolution": res,
        "profile": profile.name,
        "heldout_subnets": held_n,
        "seconds": seconds,
        "load_before": _load(),
    }
    for name, table in tables.items():
        cal = table.meta.get("calibration") or {}
        out[name] = {
            "calibration_fit_mape": cal.get("fit_mape"),
            "calibration_raw_mape": cal.get("raw_mape"),
            "fidelity_here": report_dict(fidelity_report(table, held, measured, refs[name])),
        }
    out["bundle"]["fidelity_device"] = report_dict(imported.fidelity)
    keys = sorted(local.rows)
    ratio = np.array([imported.table.rows[k].p50_ms / local.rows[k].p50_ms for k in keys])
    out["rows_bundle_over_profile"] = {
        "median": round(float(np.median(ratio)), 4),
        "p10": round(float(np.percentile(ratio, 10)), 4),
        "p90": round(float(np.percentile(ratio, 90)), 4),
    }
    return out


def _time_whole(space: SpaceSpec, archs: list[Arch], runner: Any, refs: list[Arch], chunk: int) -> Any:
    return measure_archs(
        space,
        archs,
        load_profile("cpu-et-xnnpack-1t"),
        runner=runner,
        chunk=chunk,
        references=refs,
        progress=sys.stderr.isatty(),
    )


def part_b(args: argparse.Namespace, work: Path, space_name: str, res: int) -> dict[str, Any]:
    """Few-shot ExecuTorch tables from the onnxruntime table, against the ExecuTorch block table and FLOPs."""
    from hwnas.latency.executorch_runner import ExecuTorchRunner

    space = get_space(space_name)
    et_profile = load_profile("cpu-et-xnnpack-1t")
    folder = work / "b" / f"{space.name}-r{res}"
    started = time.monotonic()
    ort = _build(space, "cpu-ort-1t", res, folder / "cpu-ort-1t.csv", calib=args.calib)
    runner = ExecuTorchRunner(et_profile, cache_dir=args.cache_dir)
    et = _build(space, et_profile.name, res, folder / "cpu-et-xnnpack-1t.csv", runner=runner, calib=args.calib)
    ns = tuple(args.ns)
    pool = calibration_archs(space, max(ns), resolutions=(res,))  # what `hwnas bundle --whole-subnets N` bundles
    exclude = {str(a) for a in pool} | calibration_arch_strs(et)
    held = heldout_archs(space, args.heldout_b, resolutions=(res,), exclude=exclude, seed=1)
    et_refs = reference_archs(et, resolutions=(res,))
    ref_archs = [r.arch for r in et_refs]
    t0 = time.monotonic()
    train = _time_whole(space, pool, runner, ref_archs, chunk=len(pool))  # one chunk: all interleaved, as a device
    heldout = _time_whole(space, held, runner, ref_archs, chunk=40)
    timing_s = time.monotonic() - t0
    block_report = fidelity_report(et, held, heldout, et_refs)
    at_training = train.reference_timings[0]  # the few-shot tables' time base: the pool's chunk
    fs_refs = [Reference(a, at_training[a].p50_ms) for a in ref_archs]
    meta = table_meta(space, et_profile, (res,))
    fewshot: dict[str, Any] = {}
    for n in ns:
        subset = {a: (train.timings[a].p50_ms, train.timings[a].cv) for a in pool[:n]}
        table: LatencyTable = fewshot_table(ort, space, subset, resolutions=(res,), meta=meta)
        report = fidelity_report(table, held, heldout, fs_refs)
        fs = table.meta["fewshot"]
        fewshot[str(n)] = {
            "model": fs["model"],
            "cv_mape": fs["cv"]["mape"],
            "candidates": fs["candidates"],
            "factors": fs["factors"],
            "depthwise_ms_per_mmac": fs["depthwise_ms_per_mmac"],
            **report_dict(report),
        }
        log.info(
            "N=%d (%s): τ %.3f; block table τ %.3f",
            n,
            fs["model"],
            report.lut.kendall_tau,
            block_report.lut.kendall_tau,
        )
    out: dict[str, Any] = {
        "space": space.name,
        "resolution": res,
        "heldout_subnets": len(held),
        "pool_subnets": len(pool),
        "reference": "cpu-ort-1t",
        "block_table": report_dict(block_report),
        "reference_table_kendall_tau": round(  # the onnxruntime table as it is, ranking ExecuTorch's subnets
            kendall_tau(LatencyPredictor(ort, space).predict_many(held), [heldout.timings[a].p50_ms for a in held]), 4
        ),
        "fewshot": fewshot,
        "seconds": {"total": round(time.monotonic() - started, 1), "whole_subnet_timing": round(timing_s, 1)},
        "load_after": _load(),
    }
    out["targets"] = _targets(out)
    return out


def _targets(out: dict[str, Any]) -> dict[str, Any] | None:
    """Issue 29's targets at N = 40: τ ≥ 0.85 × the block table's τ and ≥ calibrated FLOPs' τ + 0.2."""
    n40 = out["fewshot"].get("40")
    if n40 is None:
        return None
    verdict: dict[str, Any] = {}
    for where in ("as_measured", "x_speed"):
        pick = (lambda d: d) if where == "as_measured" else (lambda d: d.get("drift_corrected") or {})
        tau = (pick(n40).get("lut") or {}).get("kendall_tau")
        block = (pick(out["block_table"]).get("lut") or {}).get("kendall_tau")
        flops = (pick(n40).get("flops") or {}).get("kendall_tau")
        if None in (tau, block, flops):
            verdict[where] = None
            continue
        verdict[where] = {
            "fewshot_tau": tau,
            "block_tau": block,
            "flops_tau": flops,
            "vs_block": bool(tau >= 0.85 * block),
            "vs_flops": bool(tau >= flops + 0.2),
        }
    return verdict


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--part", choices=("a", "b", "all"), default="all")
    p.add_argument("--mbv3", action="store_true", help="(b) also on mbv3 at 160 px (hours of lowering the first time)")
    p.add_argument("--heldout", type=int, help="held-out subnets of (a) and (b) (default 200)")
    p.add_argument("--calib", type=int, help="calibration subnets of the tables built in (b) (default: the profiles')")
    p.add_argument("--quick", action="store_true", help="smoke run: mbv3-tiny at 24 px, few subnets")
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/hwnas-pte-cache"))
    p.add_argument("--work", type=Path, default=Path("/tmp/hwnas-bench-device"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    import torch

    torch.set_num_threads(1)
    quick = args.quick
    args.a_space, args.a_resolution = ("mbv3-tiny", 24) if quick else ("mbv3", 160)
    args.heldout_a = args.heldout or (12 if quick else 200)
    args.heldout_b = args.heldout or (12 if quick else 200)
    args.ns = (10, 20) if quick else NS
    if quick and args.calib is None:
        args.calib = 6
    out_path = RESULTS / ("device_quick.json" if quick else "device.json")
    results: dict[str, Any] = {"machine": machine_info(), "quick": quick, "load_before": _load()}
    started = time.monotonic()
    if args.part in ("a", "all"):
        results["bundle_vs_profile"] = part_a(args, args.work)
        atomic_write_json(out_path, results)
    if args.part in ("b", "all"):
        from hwnas.latency.executorch_runner import executorch_version

        results["executorch"] = executorch_version()
        results["fewshot"] = {}
        runs = [("mbv3-tiny", 24 if quick else 32)] + ([("mbv3", 160)] if args.mbv3 else [])
        for space_name, res in runs:
            results["fewshot"][f"{space_name}-r{res}"] = part_b(args, args.work, space_name, res)
            atomic_write_json(out_path, results)
    results["seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(out_path, results)
    log.info("wrote %s in %.0f s", repo_relative(out_path), results["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
