"""Latency for the baselines benchmark: one interleaved timing call for many models, and the budget rule.

Why separate: the budget rule needs a measurement taken *before* anything is trained (untrained baselines and a few
hwnas subnets; latency does not depend on weights), and the final comparison needs every trained model timed in the same
`run_protocol` call. Both use only the project's timing protocol (`hwnas.latency.harness.run_protocol`) and runner
(`OrtRunner`, the runner the LUT and `hwnas export` time with); nothing here is a new timer.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import numpy as np
from baseline_nets import BASELINES, build_baseline
from torch import nn

from hwnas.blocks import build_model
from hwnas.errors import HwnasError
from hwnas.latency.harness import Protocol, TimingStats, run_protocol
from hwnas.latency.lut import LatencyTable
from hwnas.latency.predictor import LatencyPredictor
from hwnas.latency.profiles import DeviceProfile, profile_timer
from hwnas.latency.runtime import OrtRunner
from hwnas.search import gene_latency_from_lut
from hwnas.space import SpaceSpec, sample

__all__ = ["time_all", "model_onnx_bytes", "probe_latency", "choose_budgets"]


def time_all(
    loaded: dict[str, Any], profile: DeviceProfile, protocol: Protocol, *, desc: str
) -> dict[str, TimingStats]:
    """All programs timed in one interleaved protocol run (drift hits every item alike), then released."""
    try:
        return run_protocol(
            {k: v.run for k, v in loaded.items()},
            protocol,
            rng=random.Random(0),
            timer=profile_timer(profile),
            progress=True,
            desc=desc,
        )
    finally:
        for v in loaded.values():
            v.release()


def model_onnx_bytes(model: nn.Module, shape: tuple[int, ...]) -> bytes:
    """The model as `hwnas export` writes it (the exporter's tracing, dynamic batch), so probes time what ships."""
    from hwnas.export.onnx import _to_onnx_proto  # reused rather than copied: one definition of the export

    return _to_onnx_proto(model, shape, dynamic_batch=True).SerializeToString()  # type: ignore[no-any-return]


def probe_latency(
    space: SpaceSpec, table: LatencyTable, profile: DeviceProfile, *, resolution: int, n_random: int, protocol: Protocol
) -> dict[str, Any]:
    """Untrained baselines and a few hwnas subnets timed here, to place budgets (latency does not depend on weights).

    The probe subnets give the measured/predicted ratio of the LUT on this machine (the table may come from another CPU),
    which converts a baseline's measured ms into the LUT ms a budget is written in.
    """
    runner, predictor, genes = OrtRunner(profile), LatencyPredictor(table, space), gene_latency_from_lut(table, space)
    rng = random.Random(7)
    archs = [genes.genome.decode(genes.min_ms()[1][None, :])[0], genes.genome.decode(genes.max_ms()[1][None, :])[0]]
    archs += [sample(space, rng) for _ in range(n_random)]
    models = {
        s.name: (build_baseline(s, in_channels=space.in_channels, num_classes=space.num_classes, seed=0), resolution)
        for s in BASELINES
    }
    models.update({str(a): (build_model(space, a), a.resolution) for a in archs})
    loaded = {}
    for key, (model, res) in models.items():
        shape = (profile.batch, space.in_channels, res, res)
        loaded[key] = runner.load_onnx(model_onnx_bytes(model, shape), shape)
    stats = time_all(loaded, profile, protocol, desc="latency probe")
    subnets = [
        {"arch": str(a), "predicted_ms": round(predictor.predict(a), 5), "measured_ms": round(stats[str(a)].p50_ms, 5)}
        for a in archs
    ]
    ratio = float(np.median([s["measured_ms"] / s["predicted_ms"] for s in subnets]))
    return {
        "ratio_measured_to_lut": round(ratio, 4),
        "subnets": subnets,
        "baselines_untrained_ms": {s.name: round(stats[s.name].p50_ms, 5) for s in BASELINES},
    }


def choose_budgets(lo: float, hi: float, args: argparse.Namespace, probe: dict[str, Any]) -> list[dict[str, Any]]:
    """Budgets in LUT ms, each with its reason and the baselines it was matched to (`matched`, empty for the others).

    First one budget per baseline whose latency, converted to LUT ms, lies inside the LUT's range: those are the
    head-to-head tests (does hwnas find something more accurate at that baseline's speed?). Baselines within 3% of the
    range of each other share one budget. Then `args.fractions` of the range fill up to `args.min_budgets`, skipping
    any within 3% of a budget already chosen. Each budget costs two searches and two fine-tunes per seed, so no more
    are added than needed.
    """
    if args.budgets:  # given in LUT ms of this CPU's table: one under its smallest subnet would leave nothing to search
        if min(args.budgets) < lo:
            raise HwnasError(
                f"--budgets {min(args.budgets)} ms is below the smallest subnet in this CPU's LUT "
                f"({lo:.4f} ms); its range is {lo:.4f}-{hi:.4f} ms"
            )
        return [{"budget_ms": b, "reason": "given with --budgets", "matched": []} for b in args.budgets]
    ratio, near = probe["ratio_measured_to_lut"], 0.03 * (hi - lo)
    matched = sorted(
        (ms / ratio, name, ms) for name, ms in probe["baselines_untrained_ms"].items() if lo <= ms / ratio <= hi
    )
    picks: list[dict[str, Any]] = []
    for lut_ms, name, ms in matched:
        text = f"{name} ({ms:.4f} ms measured here)"
        if picks and lut_ms - picks[-1]["budget_ms"] < near:
            picks[-1]["reason"] += f" and {text}"
            picks[-1]["matched"].append(name)
            continue
        picks.append({"budget_ms": lut_ms, "reason": f"matched to {text}", "matched": [name]})
    for b in picks:
        b["reason"] += f", / ratio {ratio:.3f} (probe subnets measured / LUT-predicted)"
    for f in (x for x in args.fractions.split(",") if x.strip()):
        if len(picks) >= args.min_budgets:
            break
        value = lo + float(f) * (hi - lo)
        if all(abs(value - b["budget_ms"]) >= near for b in picks):
            picks.append(
                {"budget_ms": value, "reason": f"{f} of the LUT range [{lo:.4f}, {hi:.4f}] ms (fill-up)", "matched": []}
            )
    picks.sort(key=lambda b: b["budget_ms"])
    for b in picks:
        b["budget_ms"] = round(b["budget_ms"], 4)
    return picks
