"""ExecuTorch + XNNPACK vs onnxruntime on this CPU: LUT fidelity on held-out mbv3 subnets, and does the ranking differ?

    flock /tmp/hwnas-heavy.lock .venv/bin/python bench/bench_executorch.py [--subnets 50] [--resolution 128]

For each runtime (cpu-et-xnnpack-1t, cpu-ort-1t) a LUT of the mbv3 blocks at one resolution is profiled with the same
calibration subnets, then the same held-out subnets are measured whole (`validate_lut`, same seed → same subnets):
share within ±5/±10%, MAPE, Kendall τ for the calibrated LUT, the raw sum and a calibrated FLOPs fit; plus Kendall τ
between the two runtimes' measured latencies. Lowering to .pte costs 3–60 s per model here, so programs are cached in
--cache-dir (timing only; see hwnas.latency.executorch_runner) and the study runs at one resolution.
Writes bench/results/executorch.json (+ fidelity PNGs).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.atomic import atomic_write_json  # noqa: E402
from hwnas.latency import load_profile  # noqa: E402
from hwnas.latency.executorch_runner import ExecuTorchRunner, executorch_version  # noqa: E402
from hwnas.latency.profiler import profile_space  # noqa: E402
from hwnas.latency.runtime import make_runner  # noqa: E402
from hwnas.latency.validate import Fit, FidelityReport, kendall_tau, plot_fidelity, validate_lut  # noqa: E402
from hwnas.machine import machine_info  # noqa: E402
from hwnas.space import get_space  # noqa: E402

log = logging.getLogger("bench_executorch")


def fit_dict(f: Fit) -> dict[str, float]:
    return {k: round(v, 4) for k, v in dataclasses.asdict(f).items()}


def report_dict(r: FidelityReport) -> dict[str, Any]:
    return {"subnets": r.subnets, "seconds": r.seconds, "lut": fit_dict(r.lut), "raw_sum": fit_dict(r.raw),
            "flops": fit_dict(r.flops)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="mbv3")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--calib", type=int, default=10, help="calibration subnets per runtime")
    p.add_argument("--subnets", type=int, default=50, help="held-out subnets")
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/hwnas-pte-cache"))
    p.add_argument("--tables", type=Path, default=ROOT / "bench" / "results" / "executorch_tables")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "executorch.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    started = time.monotonic()
    space = get_space(args.space)
    res = (args.resolution,)
    results: dict[str, Any] = {"machine": machine_info(), "executorch": executorch_version(), "space": space.name,
                               "resolution": args.resolution, "calibration_subnets": args.calib,
                               "heldout_subnets": args.subnets, "validate_seed": 1, "runtimes": {}}
    reports: dict[str, FidelityReport] = {}
    for name in ("cpu-et-xnnpack-1t", "cpu-ort-1t"):
        profile = load_profile(name)
        runner = ExecuTorchRunner(profile, cache_dir=args.cache_dir) if profile.runtime == "executorch" \
            else make_runner(profile)
        t0 = time.monotonic()
        path = args.tables / name / f"{space.name}-r{args.resolution}.csv"
        table = profile_space(space, profile, out_path=path, resolutions=res, calib_subnets=args.calib, runner=runner,
                              progress=False)
        profile_s = time.monotonic() - t0
        report = validate_lut(table, subnets=args.subnets, seed=1, resolution=args.resolution, runner=runner, chunk=20)
        reports[name] = report
        plot_fidelity(report, path.with_name(path.stem + ".fidelity.png"),
                      title=f"{space.name} r{args.resolution} on {name}: {report.subnets} held-out subnets")
        cal = table.meta.get("calibration") or {}
        results["runtimes"][name] = {"lut": str(path.relative_to(ROOT)), "rows": len(table),
                                     "profile_seconds": round(profile_s, 1), "calibration_fit_mape": cal.get("fit_mape"),
                                     "calibration_raw_mape": cal.get("raw_mape"), **report_dict(report)}
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
        "et_over_ort_ratio": {"min": round(float(ratio.min()), 3), "median": round(float(np.median(ratio)), 3),
                              "max": round(float(ratio.max()), 3)},
        "fastest_et": archs[int(np.argmin(m_et))], "fastest_ort": archs[int(np.argmin(m_ort))],
    }
    results["records"] = [{"arch": a, "et_ms": round(float(e), 5), "ort_ms": round(float(o), 5),
                           "et_pred_ms": round(et_rec[a]["predicted_ms"], 5), "ort_pred_ms": round(ort_rec[a]["predicted_ms"], 5),
                           "mmacs": round(et_rec[a]["mmacs"], 2)} for a, e, o in zip(archs, m_et, m_ort)]
    results["seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(args.out, results)
    log.info("cross-runtime: %s", results["cross_runtime"])
    log.info("wrote %s in %.0f s", args.out, results["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
