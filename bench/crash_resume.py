"""Crash test: `kill -9` a training run and a profiling run at random points, resume each until done, and compare with an
uninterrupted run (training: same step count and bit-identical weights; profiling: the same LUT rows).

    python bench/crash_resume.py [--kills 5] [--seed 0]     # writes bench/results/crash_resume.json
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
HWNAS = [sys.executable, "-m", "hwnas"]


def _run_killed(cmd: list[str], rng: random.Random, *, low_s: float, high_s: float) -> bool:
    """Start `cmd`, SIGKILL it after a random delay; True if it was killed (False if it finished first)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=rng.uniform(low_s, high_s))
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _finish(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}


def crash_train(root: Path, rng: random.Random, kills: int) -> dict:
    import torch

    base = ["train", "--space", "mbv3-tiny", "--width", "0.5", "--dataset", "synthetic", "--max-steps", "30",
            "--batch-size", "16", "--checkpoint-every", "2", "--no-progress", "--threads", "1", "--json"]
    clean = _finish(HWNAS + base + ["--out", str(root / "clean")])
    crashed_dir = root / "crashed"
    killed = 0
    cmd = HWNAS + base + ["--out", str(crashed_dir)]
    while killed < kills:
        resume = ["--resume"] if (crashed_dir / "checkpoint.pt").exists() else []
        if not _run_killed(cmd + resume, rng, low_s=4.0, high_s=12.0):
            break
        killed += 1
        # a kill never leaves a half-written checkpoint: it always loads
        if (crashed_dir / "checkpoint.pt").exists():
            torch.load(crashed_dir / "checkpoint.pt", weights_only=True)
    resumed = _finish(cmd + (["--resume"] if (crashed_dir / "checkpoint.pt").exists() else []))
    a = torch.load(root / "clean" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(crashed_dir / "checkpoint.pt", weights_only=True)["model"]
    identical = all(torch.equal(a[k], b[k]) for k in a)
    return {"kills": killed, "steps_clean": clean.get("steps"), "steps_resumed": resumed.get("steps"),
            "weights_identical": identical}


def crash_profile(root: Path, rng: random.Random, kills: int) -> dict:
    base = ["profile", "--device", "cpu-ort-1t", "--space", "mbv3-tiny", "--resolutions", "28", "32", "--calib-subnets", "4"]
    subprocess.run(HWNAS + base + ["--out", str(root / "clean")], capture_output=True, check=True)
    cmd = HWNAS + base + ["--out", str(root / "crashed")]
    killed = 0
    while killed < kills:
        if not _run_killed(cmd, rng, low_s=5.0, high_s=12.0):
            break
        killed += 1
    subprocess.run(cmd, capture_output=True, check=True)
    import pandas as pd

    rows = [set(pd.read_csv(root / name / "cpu-ort-1t" / "mbv3-tiny.csv")["key"]) for name in ("clean", "crashed")]
    return {"kills": killed, "rows_clean": len(rows[0]), "rows_resumed": len(rows[1]), "same_rows": rows[0] == rows[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"train": crash_train(Path(tmp) / "train", rng, args.kills),
                  "profile": crash_profile(Path(tmp) / "profile", rng, args.kills)}
    from hwnas.atomic import atomic_write_json
    from hwnas.machine import machine_info

    result.update(seconds=round(time.perf_counter() - start, 1), seed=args.seed, machine=machine_info())
    atomic_write_json(HERE / "results" / "crash_resume.json", result)
    print(json.dumps({k: result[k] for k in ("train", "profile", "seconds")}, indent=2))
    ok = result["train"]["weights_identical"] and result["train"]["steps_clean"] == result["train"]["steps_resumed"] \
        and result["profile"]["same_rows"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
