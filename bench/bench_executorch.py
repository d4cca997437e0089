"""ExecuTorch + XNNPACK vs onnxruntime on this CPU: LUT fidelity on held-out subnets, does the ranking differ, and does
a search under the same budget pick a different winner?

    flock /tmp/hwnas-heavy.lock .venv/bin/python bench/bench_executorch.py [--space mbv3-tiny] [--resolution 32] \
        [--subnets 40] [--search-run RUN --budget-ms T]

For each runtime (cpu-et-xnnpack-1t, cpu-ort-1t) a LUT of the space's blocks at one resolution is profiled with the same
calibration subnets, then the same held-out subnets are measured whole (`validate_lut`, same seed → same subnets):
share within ±5/±10%, MAPE, Kendall τ for the calibrated LUT, the raw sum and a calibrated FLOPs fit; plus Kendall τ
between the two runtimes' measured latencies. With --search-run, `hwnas search` runs on that trained run once per LUT
with the same budget, seed and evaluations, so any difference between the winners comes from the latency tables alone.
Lowering to .pte costs 5–100 s per model on the shared 2-core machine, so programs are lowered in 2 processes, cached in
--cache-dir (timing only; see hwnas.latency.executorch_runner) and the study runs at one resolution.
Writes bench/results/executorch.json (+ fidelity PNGs).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fidelity_json import report_dict  # noqa: E402

from hwnas.atomic import atomic_write_json  # noqa: E402
from hwnas.latency import load_profile  # noqa: E402
from hwnas.latency.executorch_runner import ExecuTorchRunner, executorch_version  # noqa: E402
from hwnas.latency.profiler import profile_space  # noqa: E402
from hwnas.latency.runtime import make_runner  # noqa: E402
from hwnas.latency.validate import FidelityReport, kendall_tau, plot_fidelity, validate_lut  # noqa: E402
from hwnas.machine import machine_info  # noqa: E402
from hwnas.space import get_space  # noqa: E402

log = logging.getLogger("bench_executorch")


def search_both(args: argparse.Namespace, luts: dict[str, Path]) -> dict[str, Any]:
    """`hwnas search` once per LUT (same run, budget, seed, evaluations); winners predicted and measured on both."""
    import json
    import subprocess

    from hwnas.blocks import build_model
    from hwnas.latency import LatencyPredictor, latency_range_ms, load_lut, measure_model_ms
    from hwnas.space import Arch

    tables = {n: load_lut(p) for n, p in luts.items()}
    space = next(iter(tables.values())).space()
    predictors = {n: LatencyPredictor(t, space) for n, t in tables.items()}
    ranges = {n: latency_range_ms(p) for n, p in predictors.items()}
    lo, hi = max(r[0] for r in ranges.values()), min(r[1] for r in ranges.values())
    budget = args.budget_ms if args.budget_ms is not None else round(lo + 0.4 * (hi - lo), 4)
    out: dict[str, Any] = {
        "run": str(args.search_run),
        "budget_ms": budget,
        "evaluations": args.evaluations,
        "ranges_ms": {n: [round(a, 4), round(b, 4)] for n, (a, b) in ranges.items()},
        "winners": {},
    }
    for name, lut in luts.items():
        cmd = [
            str(ROOT / ".venv" / "bin" / "hwnas"),
            "search",
            "--run",
            str(args.search_run),
            "--lut",
            str(lut),
            "--budget-ms",
            str(budget),
            "--evaluations",
            str(args.evaluations),
            "--seed",
            "0",
            "--out",
            str(lut.parent / "search"),
            "--force",
            "--json",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"search on {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        summary = json.loads(proc.stdout)
        arch = Arch.parse(summary["arch"])
        shape = (1, space.in_channels, arch.resolution, arch.resolution)
        measured = {}
        for other in luts:
            profile = load_profile(other)
            runner = ExecuTorchRunner(profile, cache_dir=args.cache_dir) if profile.runtime == "executorch" else None
            measured[other] = round(measure_model_ms(build_model(space, arch), shape, profile, runner=runner).p50_ms, 5)
        out["winners"][name] = {
            "arch": str(arch),
            "accuracy": summary.get("accuracy"),
            "predicted_ms": {n: round(float(p.predict(arch)), 5) for n, p in predictors.items()},
            "measured_ms": measured,
        }
        log.info("search with %s: %s", name, out["winners"][name])
    archs = [w["arch"] for w in out["winners"].values()]
    out["same_winner"] = len(set(archs)) == 1
    return out


def partial_study(args: argparse.Namespace) -> dict[str, Any]:
    """What fits when lowering is the bottleneck: every block and subnet already lowered into --cache-dir, timed whole on
    both runtimes in interleaved passes — per-item ET vs ORT latency, Kendall τ between the runtimes and against MACs."""
    import random

    from hwnas.blocks import arch_macs, block_macs, build_block, build_model
    from hwnas.latency.calibrate import calibration_archs
    from hwnas.latency.executorch_runner import load_pte
    from hwnas.latency.harness import Protocol, run_protocol
    from hwnas.latency.profiles import profile_timer
    from hwnas.latency.pte_cache import cache_key, read_cached
    from hwnas.latency.validate import heldout_archs

    space = get_space(args.space)
    res = args.resolution
    cal = calibration_archs(space, args.calib, resolutions=(res,))
    held = heldout_archs(space, args.subnets, resolutions=(res,), exclude={str(a) for a in cal}, seed=1)
    items: dict[str, tuple[torch.nn.Module, tuple[int, ...], float, str]] = {}
    for spec in get_distinct(space, res):
        shape = (1, spec.in_ch, spec.in_hw, spec.in_hw)
        items[spec.key] = (build_block(spec), shape, block_macs(spec) / 1e6, "block")
    for arch in cal + held:
        items["subnet:" + str(arch)] = (
            build_model(space, arch),
            (1, space.in_channels, res, res),
            arch_macs(space, arch) / 1e6,
            "subnet",
        )
    programs = {k: read_cached(args.cache_dir, cache_key(v[0], v[1])) for k, v in items.items()}
    cached = {k: v for k, v in items.items() if programs[k] is not None}
    log.info("%d of %d blocks/subnets are lowered in %s", len(cached), len(items), args.cache_dir)
    timings: dict[str, dict[str, float]] = {}
    for name in ("cpu-et-xnnpack-1t", "cpu-ort-1t"):
        profile = load_profile(name)
        if profile.runtime == "executorch":
            ExecuTorchRunner(profile)  # threadpool before loading
            loaded = {k: load_pte(programs[k], s) for k, (m, s, _, _) in cached.items()}  # type: ignore[arg-type]
        else:
            runner = make_runner(profile)
            loaded = {k: runner.load(m, s) for k, (m, s, _, _) in cached.items()}
        try:
            stats = run_protocol(
                {k: ld.run for k, ld in loaded.items()},
                Protocol.from_profile(profile),
                rng=random.Random(0),
                timer=profile_timer(profile),
            )
        finally:
            for ld in loaded.values():
                ld.release()
        timings[name] = {k: st.p50_ms for k, st in stats.items()}
    out: dict[str, Any] = {
        "lowered": {
            "blocks": sum(1 for v in cached.values() if v[3] == "block"),
            "subnets": sum(1 for v in cached.values() if v[3] == "subnet"),
            "blocks_in_space_at_res": sum(1 for v in items.values() if v[3] == "block"),
        }
    }
    for kind in ("block", "subnet"):
        keys = [k for k, v in cached.items() if v[3] == kind]
        if len(keys) < 2:
            continue
        et = np.array([timings["cpu-et-xnnpack-1t"][k] for k in keys])
        ort = np.array([timings["cpu-ort-1t"][k] for k in keys])
        macs = np.array([cached[k][2] for k in keys])
        ratio = et / ort
        entry: dict[str, Any] = {
            "n": len(keys),
            "kendall_tau_et_vs_ort": round(kendall_tau(et, ort), 4),
            "kendall_tau_et_vs_macs": round(kendall_tau(et, macs), 4),
            "kendall_tau_ort_vs_macs": round(kendall_tau(ort, macs), 4),
            "et_over_ort": {
                "min": round(float(ratio.min()), 3),
                "median": round(float(np.median(ratio)), 3),
                "max": round(float(ratio.max()), 3),
            },
            "et_ms": {"min": round(float(et.min()), 4), "max": round(float(et.max()), 4)},
            "ort_ms": {"min": round(float(ort.min()), 4), "max": round(float(ort.max()), 4)},
            "records": [
                {"key": k, "et_ms": round(float(e), 5), "ort_ms": round(float(o), 5), "mmacs": round(float(m), 3)}
                for k, e, o, m in zip(keys, et, ort, macs)
            ],
        }
        if kind == "subnet":
            for name, y in (("et", et), ("ort", ort)):  # in-sample linear FLOPs fit (few subnets: no held-out split)
                a, b = np.polyfit(macs, y, 1)
                err = np.abs((a * macs + b) / y - 1)
                entry[f"flops_fit_{name}_in_sample"] = {
                    "within_5pct": round(float(np.mean(err <= 0.05)), 3),
                    "within_10pct": round(float(np.mean(err <= 0.10)), 3),
                    "mape": round(float(err.mean()), 4),
                }
        out[kind + "s"] = entry
    return out


def get_distinct(space: Any, res: int) -> list[Any]:
    from hwnas.space import distinct_blocks

    return list(distinct_blocks(space, (res,))[res])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="mbv3-tiny")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--calib", type=int, default=6, help="calibration subnets per runtime")
    p.add_argument("--subnets", type=int, default=40, help="held-out subnets")
    p.add_argument("--search-run", type=Path, help="trained run of the same space: also search with both LUTs")
    p.add_argument("--budget-ms", type=float, help="search budget (default: middle of the overlap of both LUT ranges)")
    p.add_argument("--evaluations", type=int, default=40, help="search evaluations per LUT")
    p.add_argument(
        "--partial",
        action="store_true",
        help="only time what is already lowered in --cache-dir (ET vs ORT per block and subnet, τ vs MACs)",
    )
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/hwnas-pte-cache"))
    p.add_argument("--tables", type=Path, default=ROOT / "bench" / "results" / "executorch_tables")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "executorch.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    started = time.monotonic()
    space = get_space(args.space)
    res = (args.resolution,)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "executorch": executorch_version(),
        "space": space.name,
        "resolution": args.resolution,
        "calibration_subnets": args.calib,
        "heldout_subnets": args.subnets,
        "validate_seed": 1,
        "runtimes": {},
    }
    if args.partial:
        results["partial"] = partial_study(args)
        results["seconds"] = round(time.monotonic() - started, 1)
        atomic_write_json(args.out, results)
        log.info(
            "partial: %s",
            {
                k: {kk: vv for kk, vv in v.items() if kk != "records"} if isinstance(v, dict) else v
                for k, v in results["partial"].items()
            },
        )
        return 0
    reports: dict[str, FidelityReport] = {}
    lut_paths: dict[str, Path] = {}
    for name in ("cpu-et-xnnpack-1t", "cpu-ort-1t"):
        profile = load_profile(name)
        runner = (
            ExecuTorchRunner(profile, cache_dir=args.cache_dir)
            if profile.runtime == "executorch"
            else make_runner(profile)
        )
        t0 = time.monotonic()
        path = args.tables / name / f"{space.name}-r{args.resolution}.csv"
        table = profile_space(
            space, profile, out_path=path, resolutions=res, calib_subnets=args.calib, runner=runner, progress=False
        )
        profile_s = time.monotonic() - t0
        report = validate_lut(table, subnets=args.subnets, seed=1, resolution=args.resolution, runner=runner, chunk=20)
        reports[name] = report
        lut_paths[name] = path
        plot_fidelity(
            report,
            path.with_name(path.stem + ".fidelity.png"),
            title=f"{space.name} r{args.resolution} on {name}: {report.subnets} held-out subnets",
        )
        cal = table.meta.get("calibration") or {}
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        results["runtimes"][name] = {
            "table": str(shown),
            "rows": len(table),
            "profile_seconds": round(profile_s, 1),
            "calibration_fit_mape": cal.get("fit_mape"),
            "calibration_raw_mape": cal.get("raw_mape"),
            **report_dict(report),
        }
        log.info("%s: %s", name, results["runtimes"][name])
    et, ort = (reports[n] for n in ("cpu-et-xnnpack-1t", "cpu-ort-1t"))
    et_rec = {r["arch"]: r for r in et.records}
    ort_rec = {r["arch"]: r for r in ort.records}
    archs = [a for a in et_rec if a in ort_rec]
    m_et = np.array([et_rec[a]["measured_ms"] for a in archs])
    m_ort = np.array([ort_rec[a]["measured_ms"] for a in archs])
    ratio = m_et / m_ort
    results["cross_runtime"] = {
        "subnets": len(archs),
        "kendall_tau_measured_et_vs_ort": round(kendall_tau(m_et, m_ort), 4),
        "kendall_tau_et_lut_vs_ort_measured": round(kendall_tau([et_rec[a]["predicted_ms"] for a in archs], m_ort), 4),
        "kendall_tau_ort_lut_vs_et_measured": round(kendall_tau([ort_rec[a]["predicted_ms"] for a in archs], m_et), 4),
        "et_over_ort_ratio": {
            "min": round(float(ratio.min()), 3),
            "median": round(float(np.median(ratio)), 3),
            "max": round(float(ratio.max()), 3),
        },
        "fastest_et": archs[int(np.argmin(m_et))],
        "fastest_ort": archs[int(np.argmin(m_ort))],
    }
    results["records"] = [
        {
            "arch": a,
            "et_ms": round(float(e), 5),
            "ort_ms": round(float(o), 5),
            "et_pred_ms": round(et_rec[a]["predicted_ms"], 5),
            "ort_pred_ms": round(ort_rec[a]["predicted_ms"], 5),
            "mmacs": round(et_rec[a]["mmacs"], 2),
        }
        for a, e, o in zip(archs, m_et, m_ort)
    ]
    if args.search_run is not None:
        results["search"] = search_both(args, lut_paths)
    results["seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(args.out, results)
    log.info("cross-runtime: %s", results["cross_runtime"])
    log.info("wrote %s in %.0f s", args.out, results["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
