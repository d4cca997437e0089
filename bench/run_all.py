"""Run every benchmark under bench/ one after another, then summarize their result files.

    python bench/run_all.py               # everything (hours on 2 CPU cores)
    python bench/run_all.py --quick       # passes --quick to the benchmarks that offer it
    python bench/run_all.py --summarize   # only rebuild the summary from the result files already there

The summary is bench/results/summary.json (machine-readable) and docs/results.md (the same numbers as tables), written
by bench/summarize.py from the result files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from summarize import RESULTS, RESULTS_MD, write_summary  # noqa: E402

BENCHES = (
    "bench_lut.py",
    "bench_depthwise.py",
    "bench_train.py",
    "bench_search.py",
    "bench_search_quality.py",
    "bench_distributed.py",
    "bench_export.py",
    "bench_nas_modes.py",
    "bench_executorch.py",
    "bench_et_table.py",
    "bench_device.py",
    "bench_baselines.py",
    "bench_ofa_specialize.py",
)
# The trained supernets the quality benchmarks share. RUN is the 20-minute recipe; the result-quality benchmark
# (bench_baselines) trains the same recipe longer, because its mid-size subnets must be told apart by the search.
RUN = "runs/bignas-tiny"
QUALITY_RUN = "runs/bignas-tiny-e4.3"
SUPERNETS = {RUN: ("2.3", 15), QUALITY_RUN: ("4.3", 25)}  # run folder -> epochs, approximate minutes on 2 cores


def train_command(run: str, epochs: str) -> list[str]:
    return [
        "-m",
        "hwnas",
        "train",
        "--space",
        "mbv3-tiny",
        "--dataset",
        "fashion-mnist",
        "--mode",
        "bignas",
        "--out",
        run,
        "--epochs",
        epochs,
        "--augment",
        "none",
        "--no-progress",
    ]


FULL_ARGS = {
    "bench_search_quality.py": [
        "--run",
        RUN,
        "--evaluations",
        "30",
        "--population",
        "8",
        "--val-images",
        "1000",
        "--seeds",
        "3",
    ],
    "bench_export.py": ["--run", RUN],
    "bench_nas_modes.py": [
        "--warm",
        RUN,
        "--lambdas",
        "0",
        "0.002",
        "0.005",
        "0.01",
        "0.03",
        "0.1",
        "0.3",
        "1",
        "--steps",
        "40",
        "--sweep-steps",
        "60",
        "--finetune-steps",
        "60",
        "--eval-batches",
        "10",
        "--sweep-seeds",
        "3",
        "--work",
        "/tmp/hwnas-bench-nas-warm",
    ],
    "bench_executorch.py": ["--subnets", "40", "--search-run", RUN],
    "bench_device.py": ["--mbv3"],  # (b) on mbv3 at 160 px too: ~2 h of lowering the first time, see its docstring
    "bench_baselines.py": [
        "--run",
        QUALITY_RUN,
        "--seeds",
        "2",
        "--finetune-epochs",
        "1",
        "--evaluations",
        "128",
        # LUT ms at 5%, 33% and 51% of the range of the table the script profiles (see
        # baselines.json setup.lut_range_ms); on a CPU where one lies under the range it stops
        # with an error: pick budgets inside that range
        "--budgets",
        "0.2442,0.4375,0.558",
    ],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to the benchmarks that support it")
    parser.add_argument("--summarize", action="store_true", help="only rebuild summary.json and docs/results.md")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for run, (epochs, minutes) in SUPERNETS.items():
            if not args.quick and not (REPO / run / "checkpoint.pt").is_file():
                print(f"== training {run} ({epochs} epochs, ~{minutes} min)", flush=True)
                subprocess.run([sys.executable, *train_command(run, epochs)], cwd=REPO, check=True)
        for name in BENCHES:
            script = HERE / name
            if not script.exists():
                continue
            cmd = [sys.executable, str(script)]
            helptext = subprocess.run(cmd + ["--help"], capture_output=True, text=True, check=False).stdout
            if args.quick and "--quick" in helptext:
                cmd.append("--quick")
            elif not args.quick:
                cmd += FULL_ARGS.get(name, [])
            start = time.perf_counter()
            print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
            code = subprocess.run(cmd, cwd=REPO, check=False).returncode
            print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
    summary = write_summary()
    print(f"wrote {RESULTS / 'summary.json'} and {RESULTS_MD} ({len(summary['missing'])} keys null)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
