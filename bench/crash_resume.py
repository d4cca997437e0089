"""Crash test: `kill -9` a training run, a profiling run and a search at random points, resume each until done, and
compare with an uninterrupted run (training: same step count and bit-identical weights; profiling: the same LUT rows;
search: the same winner and the same evaluated candidates, with no candidate measured twice into the journal).

    python bench/crash_resume.py [--kills 5] [--seed 0] [--only search]   # writes bench/results/crash_resume.json
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

    base = [
        "train",
        "--space",
        "mbv3-tiny",
        "--width",
        "0.5",
        "--dataset",
        "synthetic",
        "--max-steps",
        "30",
        "--batch-size",
        "16",
        "--checkpoint-every",
        "2",
        "--no-progress",
        "--threads",
        "1",
        "--json",
    ]
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
    return {
        "kills": killed,
        "steps_clean": clean.get("steps"),
        "steps_resumed": resumed.get("steps"),
        "weights_identical": identical,
    }


def crash_profile(root: Path, rng: random.Random, kills: int) -> dict:
    base = [
        "profile",
        "--device",
        "cpu-ort-1t",
        "--space",
        "mbv3-tiny",
        "--resolutions",
        "28",
        "32",
        "--calib-subnets",
        "4",
    ]
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


def _kill_after_new_lines(cmd: list[str], journal: Path, rng: random.Random, *, most: int) -> bool:
    """Start `cmd`, SIGKILL it a random instant after 1..`most` new journal lines; True if killed, False if it finished.

    Counting measurements instead of seconds makes every kill land mid-search (replaying the journal takes a varying
    share of each attempt) and guarantees progress; the random extra delay lands kills anywhere in a measurement.
    """
    start = journal.read_text().count("\n") if journal.is_file() else 0
    target = start + rng.randint(1, most)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        if journal.is_file() and journal.read_text().count("\n") >= target:
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return proc.returncode == -signal.SIGKILL
        time.sleep(0.005)
    return False


def crash_search(root: Path, rng: random.Random, kills: int) -> dict:
    import pandas as pd

    from hwnas.latency.lut import load_lut
    from hwnas.search import gene_latency_from_lut
    from hwnas.search.journal import JOURNAL, read_journal

    run, lut = root / "run", HERE.parent / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"
    subprocess.run(
        HWNAS
        + [
            "train",
            "--space",
            "mbv3-tiny",
            "--dataset",
            "synthetic",
            "--max-steps",
            "20",
            "--batch-size",
            "16",
            "--no-progress",
            "--threads",
            "1",
            "--out",
            str(run),
        ],
        capture_output=True,
        check=True,
    )
    latency = gene_latency_from_lut(load_lut(lut), load_lut(lut).space())
    lo, hi = latency.min_ms()[0], latency.max_ms()[0]
    evaluations = 12 * kills
    base = HWNAS + [
        "search",
        "--run",
        str(run),
        "--lut",
        str(lut),
        "--budget-ms",
        f"{lo + 0.4 * (hi - lo):.4f}",
        "--evaluations",
        str(evaluations),
        "--population",
        "12",
        "--val-images",
        "500",
        "--seed",
        "0",
        "--json",
    ]
    t0 = time.perf_counter()
    clean = _finish(base + ["--out", str(root / "clean")])
    clean_s = time.perf_counter() - t0
    crashed = root / "crashed"
    cmd = base + ["--out", str(crashed)]
    killed, loadable = 0, True
    while killed < kills:
        if not _kill_after_new_lines(
            cmd + (["--resume"] if (crashed / JOURNAL).exists() else []), crashed / JOURNAL, rng, most=8
        ):
            break
        killed += 1
        try:  # whatever instant the kill hit, the journal loads
            read_journal(crashed / JOURNAL)
        except Exception:  # noqa: BLE001 - recorded, then the resume below reports it
            loadable = False
    resumed = _finish(cmd + (["--resume"] if (crashed / JOURNAL).exists() else []))
    extra = json.loads((crashed / "search.json").read_text())["extra"]
    lines = [(name, (root / name / JOURNAL).read_text().splitlines()[1:]) for name in ("clean", "crashed")]
    archs = [pd.read_csv(root / name / "candidates.csv")["arch"].tolist() for name in ("clean", "crashed")]
    return {
        "kills": killed,
        "evaluations": evaluations,
        "clean_s": round(clean_s, 1),
        "journal_loadable": loadable,
        "winner_clean": clean.get("arch"),
        "winner_resumed": resumed.get("arch"),
        "same_winner": clean.get("arch") == resumed.get("arch") and clean.get("accuracy") == resumed.get("accuracy"),
        "same_candidates": archs[0] == archs[1],
        "journal_same": lines[0][1] == lines[1][1],
        "measured_last_resume": extra["cache"]["misses"],
        "reused_last_resume": extra["journal"]["reused"],
    }


CASES = {"train": crash_train, "profile": crash_profile, "search": crash_search}


def _ok(name: str, r: dict) -> bool:
    if name == "train":
        return bool(r["weights_identical"] and r["steps_clean"] == r["steps_resumed"])
    if name == "profile":
        return bool(r["same_rows"])
    return bool(r["same_winner"] and r["same_candidates"] and r["journal_same"] and r["journal_loadable"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=tuple(CASES), action="append", help="run only this case (repeatable)")
    args = parser.parse_args()
    names = args.only or list(CASES)
    rng = random.Random(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result: dict = {}
        for name in names:
            (Path(tmp) / name).mkdir()
            result[name] = CASES[name](Path(tmp) / name, rng, args.kills)
    from hwnas.atomic import atomic_write_json
    from hwnas.machine import machine_info

    result.update(seconds=round(time.perf_counter() - start, 1), seed=args.seed, machine=machine_info())
    target = HERE / "results" / ("crash_resume.json" if args.only is None else f"crash_resume.{'-'.join(names)}.json")
    atomic_write_json(target, result)
    print(json.dumps({k: result[k] for k in (*names, "seconds")}, indent=2))
    return 0 if all(_ok(name, result[name]) for name in names) else 1


if __name__ == "__main__":
    raise SystemExit(main())
