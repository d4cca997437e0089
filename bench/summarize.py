"""bench/results/summary.json and docs/results.md from the per-benchmark result files (`bench/run_all.py --summarize`).

Both hold only numbers read from the per-benchmark JSON files, each with the file and field it came from and the machine
and date that file records. A headline key is read from one named file and one named entry in it, never picked as the
max over runs; a key whose source is missing, unreadable or a --quick smoke run is null, and `reasons` says why.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
RESULTS_MD = REPO / "docs" / "results.md"
sys.path.insert(0, str(REPO))

__all__ = ["RESULTS", "RESULTS_MD", "collect", "summarize", "render_markdown", "write_summary"]

# ----------------------------------------------------------------------------------------------------- reading files


def _get(data: Any, field: str) -> Any:
    """The value at a dotted path (`pooled.224.lut_calibrated.kendall_tau`, list items by index); None if absent."""
    for part in field.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


def _row(rows: Any, **match: Any) -> dict[str, Any] | None:
    """The one row of a list whose fields equal `match`; None when no row or several rows match."""
    hits = [r for r in rows or [] if isinstance(r, dict) and all(r.get(k) == v for k, v in match.items())]
    return hits[0] if len(hits) == 1 else None


def _machine_record(data: Any) -> dict[str, Any] | None:
    """The first `machine` record found breadth-first (results nest it under builds, fidelity chunks, ...)."""
    queue = [data]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            if isinstance(item.get("machine"), dict) and "cpu" in item["machine"]:
                return item["machine"]  # type: ignore[no-any-return]
            queue.extend(item.values())
        elif isinstance(item, list):
            queue.extend(item)
    return None


def _machine_of(data: Any) -> str | None:
    """CPU model and signature (the name alone hides the CPU generation under KVM); None without a record."""
    rec = _machine_record(data)
    if rec is None:
        return None
    sig = rec.get("cpu_signature")
    return str(rec["cpu"]) + (f" ({sig})" if sig else " (no signature recorded)")


def _date_of(data: Any) -> str | None:
    rec = _machine_record(data)
    return str(rec["date"]) if rec and rec.get("date") else None


@dataclass(frozen=True)
class Source:
    """One result file as loaded: its data, or why it cannot be used."""

    name: str
    data: Any
    reason: str | None


def _load(results: Path, name: str) -> Source:
    path = results / name
    if not path.is_file():
        return Source(name, None, f"bench/results/{name} missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return Source(name, None, f"bench/results/{name} unreadable ({exc})")
    if isinstance(data, dict) and data.get("quick"):
        return Source(name, None, f"bench/results/{name} is a --quick smoke run; run 'make bench' for its numbers")
    return Source(name, data, None)


# ----------------------------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    """A summary key: where it is read from (`file`, `field`), what it means (`label`) and its docs section."""

    key: str
    section: str
    label: str
    file: str
    field: str
    read: Callable[[Any], Any] | None = None  # default: the value at `field`
    unit: str = ""

    def value(self, data: Any) -> Any:
        return self.read(data) if self.read is not None else _get(data, self.field)


def _drift(pooled: Any) -> dict[str, Any] | None:
    """Fidelity of one resolution's pooled held-out subnets with predictions x the machine's speed factor."""
    dc = _get(pooled, "drift_corrected")
    if not isinstance(dc, dict):
        return None
    tau, flops_tau = _get(dc, "lut_calibrated.kendall_tau"), _get(dc, "flops_calibrated.kendall_tau")
    return {
        "within_10pct": _get(dc, "lut_calibrated.within_10pct"),
        "within_5pct": _get(dc, "lut_calibrated.within_5pct"),
        "mape": _get(dc, "lut_calibrated.mape"),
        "kendall_tau": tau,
        "kendall_tau_vs_flops": None if tau is None or flops_tau is None else tau - flops_tau,
        "retest_kendall_tau": _get(dc, "retest_kendall_tau"),
        "raw_sum_mape": _get(dc, "raw_sum.mape"),
        "raw_sum_kendall_tau": _get(dc, "raw_sum.kendall_tau"),
        "flops_mape": _get(dc, "flops_calibrated.mape"),
        "flops_kendall_tau": flops_tau,
    }


def _lut_drift(data: Any) -> dict[str, Any] | None:
    at224 = _drift(_get(data, "pooled.224"))
    if at224 is not None:
        at224["at_160"] = _drift(_get(data, "pooled.160"))
    return at224


def _tau_vs_flops(data: Any) -> float | None:
    tau = _get(data, "pooled.224.lut_calibrated.kendall_tau")
    flops = _get(data, "pooled.224.flops_calibrated.kendall_tau")
    return None if tau is None or flops is None else tau - flops


def _other_profiles(data: Any) -> dict[str, Any] | None:
    out = {}
    for profile in ("cpu-torch-1t", "cpu-ort-2t"):
        dc = _get(_row(_get(data, "fidelity"), profile=profile), "drift_corrected")
        if dc is not None:
            out[profile] = {
                "kendall_tau": _get(dc, "lut_calibrated.kendall_tau"),
                "mape": _get(dc, "lut_calibrated.mape"),
                "flops_kendall_tau": _get(dc, "flops_calibrated.kendall_tau"),
                "flops_mape": _get(dc, "flops_calibrated.mape"),
                "retest_kendall_tau": dc.get("retest_kendall_tau"),
            }
    return out or None


def _lut_run(data: Any) -> dict[str, Any] | None:
    """Digest of a recorded LUT-fidelity run (drift-corrected, both resolutions)."""
    if _get(data, "pooled") is None:
        return None
    out = {}
    for res in ("224", "160"):
        d = _drift(_get(data, f"pooled.{res}")) or {}
        out.update({f"{k}_{res}": d.get(k) for k in ("within_10pct", "mape", "kendall_tau", "retest_kendall_tau")})
        out[f"speed_factor_range_{res}"] = _get(data, f"pooled.{res}.speed_factor_range")
    return out


def _speed_row(space: str, *, which: str = "largest", resolution: int | None = None) -> Callable[[Any], Any]:
    """The export.json speed row of the named arch (`largest`/`smallest` of the space at `resolution`)."""

    def pick(data: Any) -> dict[str, Any] | None:
        from hwnas.space import get_space, largest, smallest

        arch = (largest if which == "largest" else smallest)(get_space(space), resolution=resolution)
        return _row(_get(data, "speed"), space=space, arch=str(arch))

    return pick


def _of_row(pick: Callable[[Any], Any], field: str) -> Callable[[Any], Any]:
    return lambda data: _get(pick(data), field)


def _exports(data: Any) -> list[dict[str, Any]]:
    return [e for e in _get(data, "trained.exports") or [] if isinstance(e, dict)]


def _worst(values: list[Any], fn: Callable[[list[Any]], Any]) -> Any:
    return fn(values) if values else None


def _int8_drops(data: Any) -> list[float]:
    return [round(100 * (e["test_acc"] - e["int8"]["test_acc"]), 3) for e in _exports(data) if e.get("int8")]


def _export_errors(data: Any, *, drift: bool) -> list[float] | None:
    out = []
    for e in _exports(data):
        factor = e.get("machine_speed_factor") if drift else 1.0
        if e.get("measured_ms") is None or not e.get("predicted_ms") or factor is None:
            return None
        out.append(round(e["measured_ms"] / (e["predicted_ms"] * factor) - 1, 4))
    return out or None


def _speed_range(space: str, field: str) -> Callable[[Any], Any]:
    """(min, max) of one field over the export.json speed rows of a space."""

    def read(data: Any) -> list[float] | None:
        vals = [r[field] for r in _get(data, "speed") or [] if r.get("space") == space and field in r]
        return [min(vals), max(vals)] if vals else None

    return read


def _search_row(prefix: str) -> Callable[[Any], Any]:
    def pick(data: Any) -> Any:
        hits = [r for r in _get(data, "results") or [] if str(r.get("predictor", "")).startswith(prefix)]
        return hits[0]["speedup"] if len(hits) == 1 else None

    return pick


def _quality(split: str, *, count: bool) -> Callable[[Any], Any]:
    """search_quality.json: evolution's mean minus random search's per budget (pp), or the budgets evolution won."""

    def read(data: Any) -> Any:
        diffs = []
        for b in _get(data, "budgets") or []:
            evo, rnd = _get(b, f"summary.evolution.{split}_mean"), _get(b, f"summary.random.{split}_mean")
            if evo is None or rnd is None:
                return None
            diffs.append(round(100 * (evo - rnd), 2))
        if not diffs:
            return None
        return sum(d > 0 for d in diffs) if count else diffs

    return read


def _per_budget(field: str) -> Callable[[Any], Any]:
    return lambda data: [_get(b, field) for b in _get(data, "budgets") or []] or None


def _baseline_models(data: Any) -> dict[str, Any] | None:
    models = {
        m["name"]: {"test_acc_mean": m.get("test_acc_mean"), "measured_ms": m.get("measured_ms")}
        for m in _get(data, "models") or []
        if isinstance(m, dict) and "name" in m
    }
    return models or None


def _baselines_run(data: Any) -> dict[str, Any] | None:
    """Digest of a recorded result-quality run."""
    if _get(data, "pareto_budgets") is None:
        return None
    minutes = _get(data, "setup.supernet_train_seconds")
    return {
        "pareto_wins": data.get("pareto_wins"),
        "pareto_budgets": data.get("pareto_budgets"),
        "pareto_wins_at_budget": data.get("pareto_wins_at_budget"),
        "evolution_beats_random": data.get("evolution_beats_random"),
        "seeds": len(data.get("seeds") or []),
        "supernet_epochs": _get(data, "setup.supernet_epochs"),
        "supernet_train_minutes": None if minutes is None else round(minutes / 60, 1),
        "evaluations_per_search": _get(data, "setup.evaluations_per_search"),
    }


def _executorch(data: Any) -> dict[str, Any] | None:
    et = _get(data, "runtimes.cpu-et-xnnpack-1t")
    if et is None:
        return None
    return {
        "heldout_subnets": _get(data, "heldout_subnets"),
        "resolution": _get(data, "resolution"),
        "et_lut_kendall_tau": _get(et, "lut.kendall_tau"),
        "et_lut_within_10pct": _get(et, "lut.within_10pct"),
        "et_lut_mape": _get(et, "lut.mape"),
        "et_flops_kendall_tau": _get(et, "flops.kendall_tau"),
        "et_flops_mape": _get(et, "flops.mape"),
        "et_lut_kendall_tau_drift_corrected": _get(et, "drift_corrected.lut.kendall_tau"),
        "et_lut_within_10pct_drift_corrected": _get(et, "drift_corrected.lut.within_10pct"),
        "et_lut_mape_drift_corrected": _get(et, "drift_corrected.lut.mape"),
        "et_flops_kendall_tau_drift_corrected": _get(et, "drift_corrected.flops.kendall_tau"),
        "runtimes_kendall_tau": _get(data, "cross_runtime.kendall_tau_measured_et_vs_ort"),
        "et_over_ort_median": _get(data, "cross_runtime.et_over_ort_ratio.median"),
        "et_over_ort_range": [
            _get(data, "cross_runtime.et_over_ort_ratio.min"),
            _get(data, "cross_runtime.et_over_ort_ratio.max"),
        ],
        "same_search_winner": _get(data, "search.same_winner"),
    }


def _device_bundle(data: Any) -> dict[str, Any] | None:
    """bench_device.py (a): the bundle table and the `hwnas profile` table graded on the same held-out subnets here,
    and the bundle table's report measured by the device script itself."""
    a = _get(data, "bundle_vs_profile")
    if a is None:
        return None
    out: dict[str, Any] = {
        "space": a.get("space"),
        "resolution": a.get("resolution"),
        "heldout": a.get("heldout_subnets"),
    }
    for name, field in (
        ("profile", "profile.fidelity_here"),
        ("bundle", "bundle.fidelity_here"),
        ("bundle_on_device", "bundle.fidelity_device"),
    ):
        for fit in ("kendall_tau", "within_10pct", "mape"):
            out[f"{name}_{fit}"] = _get(a, f"{field}.lut.{fit}")
            out[f"{name}_{fit}_x_speed"] = _get(a, f"{field}.drift_corrected.lut.{fit}")
    out["rows_bundle_over_profile_median"] = _get(a, "rows_bundle_over_profile.median")
    return out


def _device_fewshot(run: str) -> Callable[[Any], Any]:
    """bench_device.py (b) for one space: the few-shot table at N = 40 against the ExecuTorch block table and FLOPs
    calibrated on the same 40 subnets, as measured and x speed factor, and whether issue 29's targets were met."""

    def read(data: Any) -> dict[str, Any] | None:
        b = _get(data, f"fewshot.{run}")
        if b is None:
            return None
        out: dict[str, Any] = {"heldout": b.get("heldout_subnets"), "model_n40": _get(b, "fewshot.40.model")}
        for suffix, prefix in (("", ""), ("_x_speed", "drift_corrected.")):
            for fit in ("kendall_tau", "within_10pct", "mape"):
                out[f"fewshot_n40_{fit}{suffix}"] = _get(b, f"fewshot.40.{prefix}lut.{fit}")
                out[f"block_table_{fit}{suffix}"] = _get(b, f"block_table.{prefix}lut.{fit}")
            out[f"flops_n40_kendall_tau{suffix}"] = _get(b, f"fewshot.40.{prefix}flops.kendall_tau")
        for n in ("10", "20", "80"):
            out[f"fewshot_n{n}_kendall_tau"] = _get(b, f"fewshot.{n}.lut.kendall_tau")
        out["targets_met"] = _get(b, "targets")
        return out

    return read


LAT, LAT_RUNS = "Latency tables", "Latency tables: other recorded runs"
TRAIN, NAS = "Supernet training", "Latency-aware training"
SEARCH, QUALITY, QUALITY_RUNS = "Search", "Result quality against baselines", "Result quality: other recorded runs"
EXPORT, ET, OFA, RELIABILITY = "Export", "ExecuTorch", "OFA specialization", "Reliability"
DEV = "Real devices: bundles and few-shot tables"
DEMO = "make demo"
DIST = "torchrun on one machine"
SECTIONS = (LAT, LAT_RUNS, TRAIN, NAS, SEARCH, DIST, QUALITY, QUALITY_RUNS, EXPORT, ET, DEV, OFA, DEMO, RELIABILITY)
M = Metric
LF, EX, BL = "lut_fidelity.json", "export.json", "baselines.json"
_MBV3_L224 = _speed_row("mbv3", resolution=224)

METRICS: tuple[Metric, ...] = (
    M(
        "lut_heldout_subnets",
        LAT,
        "held-out `mbv3` subnets measured whole, per resolution (cpu-ort-1t)",
        LF,
        "pooled.224.subnets",
    ),
    M("lut_validation_passes", LAT, "interleaved timing passes per held-out subnet", LF, "fidelity.0.passes"),
    M(
        "lut_within_10pct",
        LAT,
        "share predicted within ±10%, 224 px, as measured",
        LF,
        "pooled.224.lut_calibrated.within_10pct",
    ),
    M(
        "lut_within_5pct",
        LAT,
        "share predicted within ±5%, 224 px, as measured",
        LF,
        "pooled.224.lut_calibrated.within_5pct",
    ),
    M(
        "lut_kendall_tau",
        LAT,
        "Kendall τ of predicted vs measured, 224 px, as measured",
        LF,
        "pooled.224.lut_calibrated.kendall_tau",
    ),
    M(
        "lut_kendall_tau_vs_flops",
        LAT,
        "LUT τ minus calibrated-FLOPs τ, 224 px, as measured",
        LF,
        "pooled.224.{lut,flops}_calibrated.kendall_tau",
        _tau_vs_flops,
    ),
    M(
        "lut_drift_corrected",
        LAT,
        "the same with predictions × the machine's speed factor; `raw_sum` is the "
        "uncalibrated block sum (OFA-style), `flops` a FLOPs line fitted on the same subnets, `retest` the measurement "
        "against itself (split halves)",
        LF,
        "pooled.{224,160}.drift_corrected",
        _lut_drift,
    ),
    M(
        "lut_speed_factor_range",
        LAT,
        "machine speed during validation relative to the table's build",
        LF,
        "pooled.224.speed_factor_range",
    ),
    M(
        "lut_build_s",
        LAT,
        "seconds to build the `mbv3` table (all resolutions + calibration subnets)",
        LF,
        "builds[profile=cpu-ort-1t].build_seconds",
        lambda d: _get(_row(_get(d, "builds"), profile="cpu-ort-1t"), "build_seconds"),
        "s",
    ),
    M(
        "lut_build_rows",
        LAT,
        "distinct blocks timed for that table",
        LF,
        "builds[profile=cpu-ort-1t].rows",
        lambda d: _get(_row(_get(d, "builds"), profile="cpu-ort-1t"), "rows"),
    ),
    M(
        "lut_build_calibration_subnets",
        LAT,
        "whole calibration subnets timed for that table",
        LF,
        "builds[profile=cpu-ort-1t].calibration_subnets",
        lambda d: _get(_row(_get(d, "builds"), profile="cpu-ort-1t"), "calibration_subnets"),
    ),
    M(
        "lut_predict_population_us",
        LAT,
        "predicting a population of 100 archs (vectorized)",
        LF,
        "predict_speed.predict_many_us",
        unit="µs",
    ),
    M(
        "lut_other_profiles",
        LAT,
        "other profiles at 224 px, × speed factor",
        LF,
        "fidelity[profile=P].drift_corrected",
        _other_profiles,
    ),
    M(
        "train_speedup_vs_ofa",
        TRAIN,
        "training step throughput vs OFA's code, random subnet, 32 px, batch 64",
        "train_throughput.json",
        "results.random.speedup_vs_ofa",
        unit="×",
    ),
    M(
        "train_speedup_vs_ofa_channels_last",
        TRAIN,
        "the same against OFA's code in channels_last",
        "train_throughput.json",
        "results.random.speedup_vs_ofa_channels_last",
        unit="×",
    ),
    M(
        "train_speedup_vs_ofa_largest",
        TRAIN,
        "largest subnet",
        "train_throughput.json",
        "results.largest.speedup_vs_ofa",
        unit="×",
    ),
    M(
        "train_speedup_vs_ofa_smallest",
        TRAIN,
        "smallest subnet",
        "train_throughput.json",
        "results.smallest.speedup_vs_ofa",
        unit="×",
    ),
    M(
        "sandwich_step_speedup_native_depthwise",
        TRAIN,
        "sandwich step, C depthwise weight gradient vs oneDNN",
        "depthwise.json",
        "sandwich_mbv3_tiny_32px.speedup",
        unit="×",
    ),
    M(
        "depthwise_backward_speedup_range",
        TRAIN,
        "depthwise weight gradient vs oneDNN over the kernels timed (min, max)",
        "depthwise.json",
        "kernels[].speedup",
        lambda d: _worst([k["speedup"] for k in _get(d, "kernels") or []], lambda v: [min(v), max(v)]),
        "×",
    ),
    M(
        "supernet_epochs",
        TRAIN,
        "epochs of the result-quality supernet (BigNAS, `mbv3-tiny`, Fashion-MNIST)",
        BL,
        "setup.supernet_epochs",
    ),
    M(
        "supernet_train_minutes",
        TRAIN,
        "its training time",
        BL,
        "setup.supernet_train_seconds / 60",
        lambda d: (
            None
            if _get(d, "setup.supernet_train_seconds") is None
            else round(_get(d, "setup.supernet_train_seconds") / 60, 1)
        ),
        "min",
    ),
    M(
        "nas_targets",
        NAS,
        "FBNet: derived arch's measured latency vs its target (fractions), fine-tuned test "
        "accuracy vs a random arch of the same predicted latency",
        "nas_modes.json",
        "targets[]",
        lambda d: (
            [
                {
                    k: t.get(k)
                    for k in (
                        "target_ms",
                        "measured_ms",
                        "measured_vs_target",
                        "measured_vs_target_x_speed",
                        "finetune_test_acc",
                        "random_finetune_test_acc",
                    )
                }
                for t in _get(d, "targets") or []
            ]
            or None
        ),
    ),
    M(
        "nas_sweep_kendall_tau_vs_lambda",
        NAS,
        "proxyless λ sweep: Kendall τ of each per-λ mean against λ",
        "nas_modes.json",
        "sweep_kendall_tau",
    ),
    M(
        "nas_sweep_accuracy_standard_error",
        NAS,
        "standard error of one accuracy in the sweep",
        "nas_modes.json",
        "accuracy_standard_error",
    ),
    M("nas_sweep_monotonic", NAS, "strictly monotone over λ", "nas_modes.json", "sweep_monotonic"),
    M(
        "nas_sweep_monotonic_within_noise",
        NAS,
        "monotone within the noise tolerance",
        "nas_modes.json",
        "sweep_monotonic_within_noise",
    ),
    M(
        "search_speedup_vs_ofa",
        SEARCH,
        "evolution 100 × 500 on an accuracy MLP of the same size (64×64): OFA's EvolutionFinder time / hwnas time",
        "search_speed.json",
        "results[predictor=MLP 64x64 …].speedup",
        _search_row("MLP 64x64"),
        "×",
    ),
    M(
        "search_speedup_vs_ofa_mlp_400x3",
        SEARCH,
        "the same with OFA's 400×400×400 MLP",
        "search_speed.json",
        "results[predictor=MLP 400x400x400 …].speedup",
        _search_row("MLP 400x400x400"),
        "×",
    ),
    M(
        "search_infeasible_budget_error_s",
        SEARCH,
        "time to the error for an infeasible budget",
        "search_speed.json",
        "infeasible_budget.seconds_to_error",
        unit="s",
    ),
    M(
        "search_quality_budgets",
        SEARCH,
        "budgets of the evolution-vs-random comparison",
        "search_quality.json",
        "len(budgets)",
        lambda d: len(_get(d, "budgets") or []) or None,
    ),
    M(
        "search_quality_evolution_wins_val",
        SEARCH,
        "budgets where evolution's mean val accuracy beats random search's",
        "search_quality.json",
        "budgets[].summary.{evolution,random}.val_mean",
        _quality("val", count=True),
    ),
    M(
        "search_quality_evolution_wins_test",
        SEARCH,
        "the same on the test split",
        "search_quality.json",
        "budgets[].summary.{evolution,random}.test_mean",
        _quality("test", count=True),
    ),
    M(
        "search_quality_evolution_minus_random_val_pp",
        SEARCH,
        "evolution − random, val, per budget",
        "search_quality.json",
        "budgets[].summary.*.val_mean",
        _quality("val", count=False),
        "pp",
    ),
    M(
        "search_quality_evolution_minus_random_test_pp",
        SEARCH,
        "evolution − random, test, per budget",
        "search_quality.json",
        "budgets[].summary.*.test_mean",
        _quality("test", count=False),
        "pp",
    ),
    M("pareto_wins", QUALITY, "budgets where the hwnas winner beats every baseline at most as slow", BL, "pareto_wins"),
    M("pareto_budgets", QUALITY, "budgets compared", BL, "pareto_budgets"),
    M(
        "pareto_wins_vs_torchvision_only",
        QUALITY,
        "the same against torchvision nets only",
        BL,
        "pareto_wins_vs_torchvision_only",
    ),
    M(
        "pareto_wins_at_budget",
        QUALITY,
        "wins against all a budget matched to a baseline buys",
        BL,
        "pareto_wins_at_budget",
    ),
    M("pareto_budgets_matched", QUALITY, "budgets matched to a baseline", BL, "pareto_budgets_matched"),
    M("pareto_baselines", QUALITY, "what the baselines are", BL, "protocol.baselines"),
    M("pareto_budgets_ms", QUALITY, "the budgets (LUT ms)", BL, "budgets[].budget_ms", _per_budget("budget_ms"), "ms"),
    M(
        "pareto_margins_pp",
        QUALITY,
        "hwnas winner − best baseline at most as slow, per budget",
        BL,
        "budgets[].comparison.margin_pp",
        _per_budget("comparison.margin_pp"),
        "pp",
    ),
    M(
        "pareto_hwnas_test_acc",
        QUALITY,
        "hwnas winners' mean test accuracy, per budget",
        BL,
        "budgets[].hwnas.test_acc_mean",
        _per_budget("hwnas.test_acc_mean"),
    ),
    M(
        "pareto_hwnas_measured_ms",
        QUALITY,
        "hwnas winners' measured latency (slower seed), per budget",
        BL,
        "budgets[].hwnas.measured_ms",
        _per_budget("hwnas.measured_ms"),
        "ms",
    ),
    M(
        "baselines_evolution_beats_random",
        QUALITY,
        "budgets where evolution's winner beats random search's",
        BL,
        "evolution_beats_random",
    ),
    M(
        "baseline_models",
        QUALITY,
        "torchvision baselines: mean test accuracy and measured ms",
        BL,
        "models[]",
        _baseline_models,
    ),
    M(
        "onnx_max_abs_diff_worst",
        EXPORT,
        "ONNX Runtime vs torch, worst max abs diff over the trained exports",
        EX,
        "max(trained.exports[].max_abs_diff)",
        lambda d: _worst([e["max_abs_diff"] for e in _exports(d)], max),
    ),
    M(
        "onnx_top1_agreement_worst",
        EXPORT,
        "worst top-1 agreement over the trained exports",
        EX,
        "min(trained.exports[].top1_agreement)",
        lambda d: _worst([e["top1_agreement"] for e in _exports(d)], min),
    ),
    M(
        "int8_acc_drop_pp_worst",
        EXPORT,
        "largest int8 accuracy drop over the trained exports",
        EX,
        "max(trained.exports[].test_acc − int8.test_acc)",
        lambda d: _worst(_int8_drops(d), max),
        "pp",
    ),
    M(
        "export_measured_vs_predicted",
        EXPORT,
        "trained exports: measured / predicted − 1, as measured",
        EX,
        "trained.exports[].{measured_ms,predicted_ms}",
        lambda d: _export_errors(d, drift=False),
    ),
    M(
        "export_measured_vs_predicted_drift_corrected",
        EXPORT,
        "the same with predictions × the machine's speed factor",
        EX,
        "trained.exports[].machine_speed_factor",
        lambda d: _export_errors(d, drift=True),
    ),
    M(
        "ort_speedup_vs_torch_mbv3_largest_224",
        EXPORT,
        "ONNX Runtime vs torch eager, batch 1, 1 thread, largest `mbv3` @224",
        EX,
        "speed[space=mbv3, arch=largest@224].ort_vs_eager_speedup",
        _of_row(_MBV3_L224, "ort_vs_eager_speedup"),
        "×",
    ),
    M(
        "ort_speedup_vs_torch_mbv3_range",
        EXPORT,
        "the same over the `mbv3` archs (min, max)",
        EX,
        "speed[space=mbv3].ort_vs_eager_speedup",
        _speed_range("mbv3", "ort_vs_eager_speedup"),
        "×",
    ),
    M(
        "ort_speedup_vs_torch_tiny_range",
        EXPORT,
        "the same over the `mbv3-tiny` archs (min, max)",
        EX,
        "speed[space=mbv3-tiny].ort_vs_eager_speedup",
        _speed_range("mbv3-tiny", "ort_vs_eager_speedup"),
        "×",
    ),
    M(
        "int8_speedup_mbv3_largest_224",
        EXPORT,
        "int8 (static QDQ) vs fp32 ONNX Runtime, largest `mbv3` @224",
        EX,
        "speed[space=mbv3, arch=largest@224].int8_speedup",
        _of_row(_MBV3_L224, "int8_speedup"),
        "×",
    ),
    M(
        "int8_speedup_mbv3_smallest_224",
        EXPORT,
        "the same, smallest `mbv3` @224",
        EX,
        "speed[space=mbv3, arch=smallest@224].int8_speedup",
        _of_row(_speed_row("mbv3", which="smallest", resolution=224), "int8_speedup"),
        "×",
    ),
    M(
        "int8_speedup_torchvision_large_224",
        EXPORT,
        "the same, torchvision MobileNetV3-Large @224 in the same run",
        EX,
        "speed[space=torchvision].int8_speedup",
        lambda d: _get(_row(_get(d, "speed"), space="torchvision"), "int8_speedup"),
        "×",
    ),
    M(
        "int8_speedup_tiny_range",
        EXPORT,
        "the same over the `mbv3-tiny` archs (min, max)",
        EX,
        "speed[space=mbv3-tiny].int8_speedup",
        _speed_range("mbv3-tiny", "int8_speedup"),
        "×",
    ),
    M(
        "executorch_mbv3_tiny",
        ET,
        "ExecuTorch/XNNPACK table vs onnxruntime, `mbv3-tiny`",
        "executorch.json",
        "runtimes, cross_runtime, search",
        _executorch,
    ),
    M("executorch_mbv3", ET, "the same, `mbv3`", "executorch_mbv3.json", "runtimes, cross_runtime", _executorch),
    M(
        "et_table_first_build_s",
        ET,
        "`hwnas profile --device cpu-et-xnnpack-1t --space mbv3-tiny`, empty program cache: wall time",
        "et_table.json",
        "first_build.wall_s",
        unit="s",
    ),
    M(
        "et_table_lowering_cpu_s_per_program",
        ET,
        "… CPU seconds per lowered program (worker processes, one per core)",
        "et_table.json",
        "first_build.lowering.cpu_seconds_per_program",
        unit="s",
    ),
    M(
        "et_table_cached_build_s",
        ET,
        "… the same build with every program cached: wall time",
        "et_table.json",
        "cached_build.wall_s",
        unit="s",
    ),
    M(
        "et_table_within_10pct",
        ET,
        "… its 60 held-out subnets within ±10%, as measured / × speed factor",
        "et_table.json",
        "validate",
        lambda d: [_get(d, "validate.as_measured.within_10pct"), _get(d, "validate.x_speed_factor.within_10pct")],
    ),
    M(
        "et_table_kendall_tau",
        ET,
        "… Kendall τ of the table / of calibrated FLOPs (× speed factor)",
        "et_table.json",
        "validate",
        lambda d: [
            _get(d, "validate.x_speed_factor.kendall_tau"),
            _get(d, "validate.x_speed_factor.flops_kendall_tau"),
        ],
    ),
    M(
        "device_bundle_vs_profile",
        DEV,
        "`mbv3` at 160 px on cpu-ort-1t: bundle → measure_bundle.py → import vs `hwnas profile`, same held-out subnets",
        "device.json",
        "bundle_vs_profile",
        _device_bundle,
    ),
    M(
        "device_fewshot_mbv3_tiny",
        DEV,
        "few-shot ExecuTorch table of `mbv3-tiny` (32 px) from the onnxruntime table + 40 whole subnets vs the block "
        "table and FLOPs",
        "device.json",
        "fewshot.mbv3-tiny-r32",
        _device_fewshot("mbv3-tiny-r32"),
    ),
    M(
        "device_fewshot_mbv3",
        DEV,
        "the same, `mbv3` at 160 px",
        "device.json",
        "fewshot.mbv3-r160",
        _device_fewshot("mbv3-r160"),
    ),
    M(
        "ofa_specialize_speedup_vs_ofa",
        OFA,
        "`hwnas search --scorer predictor` vs OFA's EvolutionFinder on the same "
        "predictor and latencies: the smallest speed-up over the budgets",
        "ofa_specialize.json",
        "speedup_min",
        unit="×",
    ),
    M(
        "ofa_specialize_all_within_budget",
        OFA,
        "every hwnas winner within its budget",
        "ofa_specialize.json",
        "all_within_budget",
    ),
    M("ofa_import_s", OFA, "`hwnas import-ofa` time", "ofa_specialize.json", "import_seconds", unit="s"),
    M("demo_test_acc", DEMO, "the exported winner's test accuracy (Fashion-MNIST)", "demo.json", "summary.test_acc"),
    M(
        "demo_predicted_error",
        DEMO,
        "measured / predicted latency - 1 of the exported winner, as measured",
        "demo.json",
        "summary.predicted_error",
    ),
    M(
        "demo_predicted_error_drift_corrected",
        DEMO,
        "the same with the table's reference subnets' speed factor taken out",
        "demo.json",
        "summary.predicted_error_drift_corrected",
    ),
    M("demo_wall_s", DEMO, "wall time of the whole demo (venv in place)", "demo.json", "wall_seconds", unit="s"),
    M(
        "ofa_specialize_export_max_abs_diff",
        OFA,
        "ONNX parity of the exported winner",
        "ofa_specialize.json",
        "export.max_abs_diff",
    ),
    M(
        "crash_resume_train_weights_identical",
        RELIABILITY,
        "`hwnas train` killed with -9 and resumed: same weights",
        "crash_resume.json",
        "train.weights_identical",
    ),
    M(
        "crash_resume_profile_same_rows",
        RELIABILITY,
        "`hwnas profile` killed and resumed: same rows",
        "crash_resume.json",
        "profile.same_rows",
    ),
    M(
        "crash_resume_search_same_winner",
        RELIABILITY,
        "`hwnas search` killed and resumed: same winner",
        "crash_resume.search.json",
        "search.same_winner",
    ),
    M(
        "crash_resume_search_same_candidates",
        RELIABILITY,
        "… and same candidates",
        "crash_resume.search.json",
        "search.same_candidates",
    ),
    # ---- torchrun on one machine (bench/bench_distributed.py)
    M(
        "distributed_search_speedup_wall",
        DIST,
        "the same measured search, 2 gloo ranks × 1 thread vs 1 process × 2 threads: wall-time speed-up",
        "distributed.json",
        "search.speedup_wall",
        unit="×",
    ),
    M(
        "distributed_search_speedup_search",
        DIST,
        "… the search's own seconds (without process start and loading)",
        "distributed.json",
        "search.speedup_search",
        unit="×",
    ),
    M(
        "distributed_search_same_winner",
        DIST,
        "every launch of either kind found the same winner",
        "distributed.json",
        "search.same_winner",
    ),
    M(
        "distributed_search_same_scores",
        DIST,
        "… and the same candidate scores",
        "distributed.json",
        "search.same_candidate_scores",
    ),
    M(
        "distributed_search_max_score_diff",
        DIST,
        "… largest difference of one candidate's val accuracy between launches (thread counts differ)",
        "distributed.json",
        "search.max_score_diff",
    ),
    M(
        "distributed_train_img_per_s",
        DIST,
        "`hwnas train --mode bignas` throughput at the same global batch, per ranks × threads",
        "distributed.json",
        "train.img_per_s",
        unit="img/s",
    ),
    M(
        "distributed_train_two_ranks_vs_two_threads",
        DIST,
        "training img/s, 2 ranks × 1 thread over 1 rank × 2 threads",
        "distributed.json",
        "train.two_ranks_vs_two_threads",
        unit="×",
    ),
)


def _recorded_runs(results: Path) -> list[Metric]:
    """One metric per recorded extra run of a family (key = file stem): other CPUs, other settings, drift studies."""
    out = []
    for path in sorted(results.glob("lut_fidelity_*.json")):
        out.append(
            M(
                path.stem,
                LAT_RUNS,
                "drift-corrected fidelity of that run's table",
                path.name,
                "pooled.{224,160}.drift_corrected",
                _lut_run,
            )
        )
    for path in sorted(results.glob("baselines_*.json")):
        out.append(
            M(path.stem, QUALITY_RUNS, "that run's result quality", path.name, "pareto_*, setup", _baselines_run)
        )
    return out


# ----------------------------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Entry:
    metric: Metric
    value: Any
    reason: str | None
    machine: str | None
    date: str | None


def collect(results: Path = RESULTS) -> list[Entry]:
    """Every metric read from the result files in `results`, with its provenance or the reason it is null."""
    sources: dict[str, Source] = {}
    entries = []
    for metric in (*METRICS, *_recorded_runs(results)):
        if metric.file not in sources:
            sources[metric.file] = _load(results, metric.file)
        src = sources[metric.file]
        value, reason = None, src.reason
        if src.data is not None:
            value = metric.value(src.data)
            if value is None:
                reason = f"{metric.field} not found in bench/results/{metric.file}"
        entries.append(Entry(metric, value, reason, _machine_of(src.data), _date_of(src.data)))
    return entries


def _result_files(results: Path) -> list[str]:
    return sorted(p.name for p in results.glob("*.json") if p.name != "summary.json")


def summarize(results: Path = RESULTS, entries: list[Entry] | None = None) -> dict[str, Any]:
    """summary.json: headline keys, then `missing`, `reasons`, `provenance`, `sources` and `measured_on`."""
    entries = collect(results) if entries is None else entries
    summary: dict[str, Any] = {e.metric.key: e.value for e in entries}
    summary["missing"] = sorted(e.metric.key for e in entries if e.value is None)
    summary["reasons"] = {e.metric.key: e.reason for e in entries if e.value is None}
    summary["provenance"] = {
        e.metric.key: {
            "file": f"bench/results/{e.metric.file}",
            "field": e.metric.field,
            "machine": e.machine,
            "date": e.date,
        }
        for e in entries
    }
    summary["sources"] = _result_files(results)
    summary["measured_on"] = {name: _machine_of(_load(results, name).data) for name in summary["sources"]}
    return summary


# ------------------------------------------------------------------------------------------------------ results.md


def _num(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:+.2f}" if unit == "pp" else f"{value:.1e}" if 0 < abs(value) < 1e-3 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _fmt(value: Any, unit: str = "") -> str:
    if isinstance(value, list):
        text = "[" + ", ".join(_num(v, unit) for v in value) + "]"
    else:
        text = _num(value, unit)
    return text + (f" {unit}" if unit and value is not None and not isinstance(value, str) else "")


def _short(machine: str | None) -> str:
    """The machine without its instruction-set list (that is in the table of result files)."""
    return "—" if machine is None else machine.split(" [", 1)[0] + (")" if " [" in machine else "")


def _leaves(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(f"{prefix}.{k}", v)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(f"{prefix}[{i}]", v)]
    return [(prefix, value)]


def _date(iso: str | None) -> str:
    return "—" if not iso else iso[:16].replace("T", " ") + (" UTC" if iso.endswith("+00:00") else "")


def render_markdown(entries: list[Entry], results: Path = RESULTS) -> str:
    """docs/results.md: one table per section, a row per number, then the list of result files."""
    header = (
        "Generated by `python bench/run_all.py --summarize` from `bench/results/*.json` (the same numbers as "
        "`bench/results/summary.json`); do not edit by hand. `make bench` reruns the benchmarks."
    )
    legend = (
        "Every row gives the summary key, the file and field it was read from, and the CPU (model and signature) "
        "and date that file records. Latencies are only comparable on the CPU they were measured on. Shares and "
        "MAPE are fractions (0.95 = 95%); accuracies are fractions of the test or val split; `pp` = percentage "
        "points. A dash is a value the file does not hold; the reason is under *Missing*. How the benchmarks "
        "are run: [benchmarks.md](benchmarks.md)."
    )
    lines = ["# Results", "", header, "", legend, ""]
    for section in SECTIONS:
        rows = [e for e in entries if e.metric.section == section]
        if not rows:
            continue
        lines += [f"## {section}", "", "| metric | value | file | machine | date |", "|---|---|---|---|---|"]
        for e in rows:
            link = f"[{e.metric.file}](../bench/results/{e.metric.file})"
            for i, (name, value) in enumerate(_leaves(e.metric.key, e.value)):
                label = f"`{name}`: {e.metric.label}" if i == 0 else f"`{name}`"
                field = e.metric.field + name[len(e.metric.key) :] if e.metric.read is None else e.metric.field
                where = f"{link} `{field}`" if i == 0 or e.metric.read is None else link
                lines.append(
                    f"| {label} | {_fmt(value, e.metric.unit)} | {where} | {_short(e.machine)} | {_date(e.date)} |"
                )
        lines.append("")
    missing = [e for e in entries if e.value is None]
    if missing:
        lines += ["## Missing", "", "| key | reason |", "|---|---|"]
        lines += [f"| `{e.metric.key}` | {e.reason} |" for e in missing] + [""]
    lines += ["## Result files", "", "| file | machine | date |", "|---|---|---|"]
    for name in _result_files(results):
        data = _load(results, name).data
        lines.append(f"| [{name}](../bench/results/{name}) | {_machine_of(data) or '—'} | {_date(_date_of(data))} |")
    return "\n".join(lines) + "\n"


def write_summary(results: Path = RESULTS, *, docs: Path = RESULTS_MD) -> dict[str, Any]:
    """Write results/summary.json and `docs` (docs/results.md) atomically; return the summary."""
    from hwnas.atomic import atomic_write_json, atomic_write_text

    entries = collect(results)
    summary = summarize(results, entries)
    atomic_write_json(results / "summary.json", summary)
    atomic_write_text(docs, render_markdown(entries, results))
    return summary
