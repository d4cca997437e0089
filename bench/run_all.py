"""Run every benchmark under bench/ one after another, then write bench/results/summary.json from their result files.

    python bench/run_all.py               # everything (hours on a 2-core machine: see README)
    python bench/run_all.py --quick       # passes --quick to the benchmarks that offer it
    python bench/run_all.py --summarize   # only rebuild summary.json from the result files already there

The summary holds only numbers read from the per-benchmark JSON files; a key whose benchmark has not produced its number
is null and listed under "missing", never filled in.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))

BENCHES = ("bench_lut.py", "bench_depthwise.py", "bench_train.py", "bench_search.py", "bench_search_quality.py",
           "bench_export.py", "bench_nas_modes.py", "bench_executorch.py", "bench_baselines.py",
           "bench_ofa_specialize.py")
# The trained supernets the quality benchmarks share, and how the committed results were made (a full run only):
# RUN is the 20-minute recipe; the result-quality benchmark (bench_baselines) uses the same recipe trained 4.3 epochs,
# because at 2.3 epochs the supernet's mid-size subnets scored alike and the winners did not rise with the budget.
RUN = "runs/bignas-tiny"
QUALITY_RUN = "runs/bignas-tiny-e4.3"
SUPERNETS = {RUN: ("2.3", 15), QUALITY_RUN: ("4.3", 25)}  # run folder -> epochs, minutes on the 2-vCPU VM


def train_command(run: str, epochs: str) -> list[str]:
    return ["-m", "hwnas", "train", "--space", "mbv3-tiny", "--dataset", "fashion-mnist", "--mode", "bignas",
            "--out", run, "--epochs", epochs, "--augment", "none", "--no-progress"]


FULL_ARGS = {
    "bench_search_quality.py": ["--run", RUN, "--evaluations", "30", "--population", "8", "--val-images", "1000",
                                "--seeds", "3"],
    "bench_export.py": ["--run", RUN],
    "bench_nas_modes.py": ["--warm", RUN, "--lambdas", "0", "0.002", "0.005", "0.01", "0.03", "0.1", "0.3", "1",
                           "--steps", "40",
                           "--sweep-steps", "60", "--finetune-steps", "60", "--eval-batches", "10",
                           "--sweep-seeds", "3", "--work", "/tmp/hwnas-bench-nas-warm"],
    "bench_executorch.py": ["--subnets", "40", "--search-run", RUN],
    "bench_baselines.py": ["--run", QUALITY_RUN, "--seeds", "2", "--finetune-epochs", "1", "--evaluations", "128",
                           # LUT ms of the table the script profiles on this CPU: 5%, 33% and 51% of its range on
                           # the Xeon VM (0.211-0.895 ms); on another CPU one under the range stops it with an error
                           "--budgets", "0.2442,0.4375,0.558"],
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _get(data: Any, *path: Any) -> Any:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _cpu_of(data: Any) -> str | None:
    """CPU model of the first `machine` record found breadth-first (results nest it under builds, runs, ...)."""
    queue = [data]
    while queue:
        item = queue.pop(0)
        if isinstance(item, dict):
            if isinstance(item.get("machine"), dict) and "cpu" in item["machine"]:
                sig = item["machine"].get("cpu_signature")  # the name alone hides the CPU generation under KVM
                return str(item["machine"]["cpu"]) + (f" ({sig})" if sig else "")
            queue.extend(item.values())
        elif isinstance(item, list):
            queue.extend(item)
    return None


def summarize() -> dict[str, Any]:
    from hwnas.machine import machine_info

    lut = _load("lut_fidelity.json")
    train = _load("train_throughput.json")
    speed = _load("search_speed.json")
    export = _load("export.json")
    quality = _load("search_quality.json")
    depthwise = _load("depthwise.json")
    baselines = _load("baselines.json")
    specialize = _load("ofa_specialize.json")
    at224 = _get(lut, "pooled", "224")
    summary: dict[str, Any] = {
        "lut_within_10pct": _get(at224, "lut_calibrated", "within_10pct"),
        "lut_within_5pct": _get(at224, "lut_calibrated", "within_5pct"),
        "lut_kendall_tau": _get(at224, "lut_calibrated", "kendall_tau"),
        "lut_kendall_tau_vs_flops": None,
        "lut_build_s": _get(lut, "builds", 0, "build_seconds"),
        "train_speedup_vs_ofa": _get(train, "results", "random", "speedup_vs_ofa"),
        "train_speedup_vs_ofa_channels_last": _get(train, "results", "random", "speedup_vs_ofa_channels_last"),
        "search_speedup_vs_ofa": max((r["speedup"] for r in _get(speed, "results") or []), default=None),
        "pareto_wins": None,
        "pareto_budgets": None,
        "onnx_max_abs_diff": None,
        "ort_speedup_vs_torch": None,
        "int8_speedup": None,
        "int8_acc_drop_pp": None,
        "sandwich_step_speedup_native_depthwise": _get(depthwise, "sandwich_mbv3_tiny_32px", "speedup"),
        # OFA's supernet imported and specialized by predictor: the slowest budget's speed-up over OFA's own finder
        "ofa_specialize_speedup_vs_ofa": _get(specialize, "speedup_min"),
        "ofa_specialize_all_within_budget": _get(specialize, "all_within_budget"),
    }
    exports = _get(export, "trained", "exports") or []
    if exports:  # the worst case over the trained exports
        summary["onnx_max_abs_diff"] = max(e["max_abs_diff"] for e in exports)
        drops = [100 * (e["test_acc"] - e["int8"]["test_acc"]) for e in exports if e.get("int8")]
        summary["int8_acc_drop_pp"] = round(max(drops), 3) if drops else None
    drift = _get(at224, "drift_corrected")
    if drift:  # the same held-out subnets, predictions x the machine's speed factor of their chunk (hwnas.latency.drift)
        summary["lut_drift_corrected"] = {k: _get(drift, "lut_calibrated", k)
                                          for k in ("within_10pct", "within_5pct", "mape", "kendall_tau")}
        summary["lut_drift_corrected"]["kendall_tau_vs_flops"] = (_get(drift, "lut_calibrated", "kendall_tau")
                                                                  - _get(drift, "flops_calibrated", "kendall_tau"))
        summary["lut_speed_factor_range"] = _get(at224, "speed_factor_range")
        drift160 = _get(lut, "pooled", "160", "drift_corrected")
        if drift160:
            summary["lut_drift_corrected"]["at_160"] = {
                k: _get(drift160, "lut_calibrated", k) for k in ("within_10pct", "within_5pct", "mape", "kendall_tau")}
    if at224 is not None:
        summary["lut_kendall_tau_vs_flops"] = (_get(at224, "lut_calibrated", "kendall_tau")
                                               - _get(at224, "flops_calibrated", "kendall_tau"))
    rows = _get(export, "speed") or []
    big = [r for r in rows if r.get("space") == "mbv3"]
    if rows:
        summary["ort_speedup_vs_torch"] = max(r["ort_vs_eager_speedup"] for r in rows)
    if big:
        summary["int8_speedup"] = max(r["int8_speedup"] for r in big)
    nas = _load("nas_modes.json")
    if nas and nas.get("targets"):  # latency-aware training: the derived archs against their targets, the λ sweep
        summary["nas_targets"] = [{k: t.get(k) for k in ("target_ms", "measured_ms", "measured_vs_target",
                                                        "measured_vs_target_x_speed", "finetune_test_acc",
                                                        "random_finetune_test_acc")} for t in nas["targets"]]
        summary["nas_sweep_kendall_tau_vs_lambda"] = nas.get("sweep_kendall_tau")
        summary["nas_sweep_accuracy_standard_error"] = nas.get("accuracy_standard_error")
        summary["nas_sweep_monotonic"] = nas.get("sweep_monotonic")
        summary["nas_sweep_monotonic_within_noise"] = nas.get("sweep_monotonic_within_noise")
    budgets = _get(quality, "budgets")
    if baselines is not None and baselines.get("pareto_budgets") and not baselines.get("quick"):
        summary["pareto_budgets"] = baselines["pareto_budgets"]
        summary["pareto_wins"] = baselines["pareto_wins"]
        # stricter: against all that the matched baseline's latency buys, not only what is as fast as the winner
        summary["pareto_wins_at_budget"] = baselines.get("pareto_wins_at_budget")
        summary["pareto_budgets_matched"] = baselines.get("pareto_budgets_matched")
        summary["pareto_baselines"] = ("baselines.json: test accuracy vs measured latency against torchvision "
                                       "mobilenet_v3_small/large x0.5/0.75/1.0 and random-search winners")
    elif budgets:
        summary["pareto_budgets"] = len(budgets)
        summary["pareto_wins"] = sum(
            1 for b in budgets
            if _get(b, "summary", "evolution", "val_mean") is not None
            and b["summary"]["evolution"]["val_mean"] > b["summary"]["random"]["val_mean"])
        summary["pareto_baselines"] = ("search_quality: evolution vs random search val accuracy at equal evaluations "
                                       "(torchvision baselines: baselines.json " +
                                       ("is a --quick smoke run)" if baselines is not None else "not run yet)"))
    summary["missing"] = sorted(k for k, v in summary.items() if v is None)
    summary["sources"] = sorted(p.name for p in RESULTS.glob("*.json") if p.name != "summary.json")
    # the project's VM changed CPU between runs: say which CPU each result was measured on
    summary["measured_on"] = {name: _cpu_of(_load(name)) for name in summary["sources"]}
    summary["machine"] = machine_info()
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to the benchmarks that support it")
    parser.add_argument("--summarize", action="store_true", help="only rebuild summary.json")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for run, (epochs, minutes) in SUPERNETS.items():
            if not args.quick and not (HERE.parent / run / "checkpoint.pt").is_file():
                print(f"== training {run} ({epochs} epochs, ~{minutes} min)", flush=True)
                subprocess.run([sys.executable, *train_command(run, epochs)], cwd=HERE.parent, check=True)
        for name in BENCHES:
            script = HERE / name
            if not script.exists():
                continue
            cmd = [sys.executable, str(script)]
            helptext = subprocess.run(cmd + ["--help"], capture_output=True, text=True).stdout
            if args.quick and "--quick" in helptext:
                cmd.append("--quick")
            elif not args.quick:
                cmd += FULL_ARGS.get(name, [])
            start = time.perf_counter()
            print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
            code = subprocess.run(cmd, cwd=HERE.parent).returncode
            print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
    from hwnas.atomic import atomic_write_json

    atomic_write_json(RESULTS / "summary.json", summarize())
    print(f"wrote {RESULTS / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
