"""`torchrun -m hwnas -- search`: candidates measured on 2 gloo ranks give what one process gives, a `kill -9` of rank 1
resumes to the same end, journals move between 1 and 2 ranks, and `--device cuda` without CUDA is one line.

Every launch uses `--threads 1` and OMP_NUM_THREADS=1 on every process, so each rank computes exactly as the single
process does and the scores are bit-identical (see docs/search.md on the determinism caveat otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from search_lut import write_table
from search_run import write_untrained_run

from hwnas.cli.main import main
from hwnas.search import gene_latency_from_lut
from hwnas.search.journal import JOURNAL, read_journal
from hwnas.search.sharding import shard_indices
from hwnas.space import get_space

SPACE = get_space("mbv3-tiny")
EVALUATIONS = 24
ENV = {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path | str]:
    from hwnas.latency.lut import load_lut

    root = tmp_path_factory.mktemp("distributed")
    lut = write_table(SPACE, root / "mbv3-tiny.csv")
    run = write_untrained_run(SPACE, root / "run")
    lat = gene_latency_from_lut(load_lut(lut), SPACE)
    lo, hi = lat.min_ms()[0], lat.max_ms()[0]
    return {"root": root, "lut": lut, "run": run, "budget": f"{lo + 0.3 * (hi - lo):.5f}"}


def _args(setup: dict[str, Path | str], out: Path, *extra: str) -> list[str]:
    return [
        "search",
        "--run",
        str(setup["run"]),
        "--lut",
        str(setup["lut"]),
        "--budget-ms",
        str(setup["budget"]),
        "--evaluations",
        str(EVALUATIONS),
        "--population",
        "6",
        "--val-images",
        "128",
        "--calib-images",
        "32",
        "--seed",
        "1",
        "--threads",
        "1",
        "--out",
        str(out),
        "--json",
        *extra,
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(args: list[str], ranks: int = 2) -> list[str]:
    # `--` ends torchrun's own options: it would read hwnas's `--run` as an abbreviation of its `--run-path`
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-port", str(_free_port())]
    return [sys.executable, *launcher, "-m", "hwnas", "--", *args]


def _run(cmd: list[str]) -> dict[str, object]:
    proc = subprocess.run(cmd, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # exactly one JSON document: only rank 0 prints


def _result(out: Path) -> dict[str, object]:
    """What the number of ranks must not change: winner, Pareto set, every candidate and its score in order."""
    saved = json.loads((out / "search.json").read_text())
    candidates = pd.read_csv(out / "candidates.csv")
    return {
        "winner": {k: saved[k] for k in ("arch", "predicted_ms", "accuracy", "budget_ms", "evaluated")},
        "pareto": saved["pareto"],
        "candidates": candidates[["arch", "predicted_ms", "accuracy", "winner"]].values.tolist(),
    }


@pytest.fixture
def threads_restored():
    """In-process runs pass `--threads 1` like the ranks do; the test process gets its thread count back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _lines(out: Path) -> list[str]:
    return (out / JOURNAL).read_text().splitlines(keepends=True)


@pytest.fixture(scope="module")
def single(setup: dict[str, Path | str]) -> Path:
    out = Path(setup["root"]) / "single"
    summary = _run([sys.executable, "-m", "hwnas", *_args(setup, out)])
    assert summary["world_size"] == 1 and summary["torch_device"] == "cpu"
    return out


@pytest.fixture(scope="module")
def two_ranks(setup: dict[str, Path | str]) -> tuple[Path, dict[str, object]]:
    out = Path(setup["root"]) / "two_ranks"
    return out, _run(_torchrun(_args(setup, out)))


def test_shards_cover_the_batch_once_and_balance_resolutions() -> None:
    resolutions = [32, 24, 32, 28, 24, 32, 28, 24, 32]
    shares = [shard_indices(resolutions, rank=r, world=2) for r in range(2)]
    assert sorted(shares[0] + shares[1]) == list(range(len(resolutions)))
    assert [len(s) for s in shares] == [5, 4]
    for res in set(resolutions):  # each resolution split as evenly as the ranks allow
        counts = [sum(resolutions[i] == res for i in share) for share in shares]
        assert max(counts) - min(counts) <= 1


@pytest.mark.slow
def test_two_ranks_find_what_one_process_finds(single: Path, two_ranks: tuple[Path, dict[str, object]]) -> None:
    out, summary = two_ranks
    assert summary["world_size"] == 2 and summary["torch_device"] == "cpu" and summary["evaluated"] == EVALUATIONS
    assert _result(out) == _result(single)
    # rank 0 journals each merged batch in batch order: the journal reads exactly like the single process's
    assert _lines(out) == _lines(single)
    saved = json.loads((out / "search.json").read_text())
    assert saved["world_size"] == 2 and saved["extra"]["cache"]["misses"] == EVALUATIONS
    assert sorted(p.name for p in out.iterdir()) == [
        "candidates.csv",
        "pareto.csv",
        "search.journal.jsonl",
        "search.json",
    ]


@pytest.mark.slow
def test_two_rank_journal_resumes_in_one_process(
    setup, single: Path, two_ranks, tmp_path: Path, capsys, threads_restored
) -> None:
    """The journal's identity does not name the number of ranks: a search cut on 2 ranks finishes on 1."""
    out = tmp_path / "cut"
    out.mkdir()
    kept = 7
    (out / JOURNAL).write_text("".join(_lines(two_ranks[0])[: 1 + kept]))
    assert main(_args(setup, out, "--resume")) == 0
    capsys.readouterr()
    assert _result(out) == _result(single)
    extra = json.loads((out / "search.json").read_text())["extra"]
    assert extra["journal"]["reused"] == kept and extra["cache"]["misses"] == EVALUATIONS - kept


def _rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` whose environment carries `tag` (only this test's launch does)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"HWNAS_TEST_TAG={tag}".encode() in env and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.slow
def test_kill_9_of_rank_1_then_resume(setup, single: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    tag = uuid.uuid4().hex
    env = {**os.environ, **ENV, "HWNAS_TEST_TAG": tag}
    proc = subprocess.Popen(_torchrun(_args(setup, out)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        pid = None
        while pid is None and time.monotonic() < deadline and proc.poll() is None:
            pid = _rank_pid(tag, 1)
            time.sleep(0.01)
        assert pid is not None, "the rank-1 worker never started"
        journal = out / JOURNAL
        while time.monotonic() < deadline and proc.poll() is None:
            text = journal.read_text() if journal.is_file() else ""
            if text.count("\n") >= 1 + 6:  # header + the first merged batch
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the search ended before rank 1 could be killed; make it longer"
        os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0  # torchrun reports the lost worker and stops rank 0
    assert not (out / "search.json").exists()
    after = journal.read_text()
    assert after.startswith(text)  # what was journaled before the kill is kept
    _, measured = read_journal(journal)
    assert 6 <= len(measured) < EVALUATIONS
    summary = _run(_torchrun(_args(setup, out, "--resume")))
    assert summary["world_size"] == 2
    assert _result(out) == _result(single)
    assert _lines(out) == _lines(single)  # nothing measured twice, nothing lost, same order
    extra = json.loads((out / "search.json").read_text())["extra"]
    assert extra["journal"]["reused"] == len(measured) and extra["cache"]["misses"] == EVALUATIONS - len(measured)


def test_device_cuda_without_cuda_is_one_line(setup, tmp_path: Path, capsys, threads_restored) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present: --device cuda is valid here")
    out = tmp_path / "cuda"
    assert main(_args(setup, out, "--device", "cuda")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hwnas: error: --device cuda: CUDA is not available")
    assert "--device cpu" in err and not out.exists()
