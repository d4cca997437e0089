"""`hwnas search --resume`: after Ctrl-C, `kill -9` or a torn journal line the search ends exactly where an uninterrupted
run with the same seed ends, without measuring again what the journal holds; another search's journal is refused.

An uninterrupted search is run once per module; every other test starts from (a part of) its journal. A journal cut
after K lines is exactly what a crash after K measurements leaves, so the in-process tests are real resumes; the
subprocess tests deliver the real signals.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from search_lut import write_table
from search_run import write_untrained_run

from hwnas.cli.main import main
from hwnas.search import gene_latency_from_lut
from hwnas.search.journal import JOURNAL, read_journal
from hwnas.space import get_space

SPACE = get_space("mbv3-tiny")
EVALUATIONS = 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path | str]:
    from hwnas.latency.lut import load_lut

    root = tmp_path_factory.mktemp("resume")
    lut = write_table(SPACE, root / "mbv3-tiny.csv")
    run = write_untrained_run(SPACE, root / "run")
    lat = gene_latency_from_lut(load_lut(lut), SPACE)
    lo, hi = lat.min_ms()[0], lat.max_ms()[0]
    return {
        "root": root,
        "lut": lut,
        "run": run,
        "budget": f"{lo + 0.3 * (hi - lo):.5f}",
        "budget2": f"{lo + 0.4 * (hi - lo):.5f}",
    }


def _argv(setup: dict[str, Path | str], out: Path, *extra: str, budget: str | None = None) -> list[str]:
    return [
        "search",
        "--run",
        str(setup["run"]),
        "--lut",
        str(setup["lut"]),
        "--budget-ms",
        budget or str(setup["budget"]),
        "--evaluations",
        str(EVALUATIONS),
        "--population",
        "6",
        "--val-images",
        "64",
        "--calib-images",
        "32",
        "--seed",
        "1",
        "--out",
        str(out),
        "--json",
        *extra,
    ]


@pytest.fixture(scope="module")
def clean(setup: dict[str, Path | str]) -> Path:
    out = Path(setup["root"]) / "clean"
    assert main(_argv(setup, out)) == 0
    return out


def _result(out: Path) -> dict[str, object]:
    """What must not depend on interruptions: winner, Pareto set, and every evaluated candidate in evaluation order."""
    saved = json.loads((out / "search.json").read_text())
    candidates = pd.read_csv(out / "candidates.csv")
    return {
        "winner": {k: saved[k] for k in ("arch", "predicted_ms", "accuracy", "budget_ms", "evaluated")},
        "pareto": saved["pareto"],
        "candidates": candidates[["arch", "accuracy", "winner"]].values.tolist(),
    }


def _journal_lines(out: Path) -> list[str]:
    return (out / JOURNAL).read_text().splitlines(keepends=True)


def _reuse(
    clean: Path, out: Path, setup: dict[str, Path | str], capsys: pytest.CaptureFixture[str], *, reused: int
) -> dict[str, object]:
    """Resume in `out`; checks the outcome equals the clean run and that only the journal's missing candidates ran."""
    assert main(_argv(setup, out, "--resume")) == 0
    capsys.readouterr()
    assert _result(out) == _result(clean)
    extra = json.loads((out / "search.json").read_text())["extra"]
    assert extra["journal"]["reused"] == reused
    assert extra["cache"]["misses"] == EVALUATIONS - reused  # nothing in the journal was measured again
    assert _journal_lines(out) == _journal_lines(clean)  # same measurements, same order, no duplicates
    return extra


def test_uninterrupted_search_journals_every_measurement(clean: Path) -> None:
    identity, measured = read_journal(clean / JOURNAL)
    assert len(measured) == EVALUATIONS == len(_journal_lines(clean)) - 1
    assert (
        identity["seed"] == 1 and identity["strategy"] == "evolution" and len(identity["run_checkpoint_sha256"]) == 64
    )
    assert set(measured) == {row[0] for row in _result(clean)["candidates"]}


@pytest.mark.parametrize("kept", [0, 9])
def test_resume_after_interruption_equals_uninterrupted(setup, clean: Path, tmp_path: Path, capsys, kept: int) -> None:
    out = tmp_path / "cut"
    out.mkdir()
    (out / JOURNAL).write_text(
        "".join(_journal_lines(clean)[: 1 + kept])
    )  # what a kill after `kept` measurements leaves
    _reuse(clean, out, setup, capsys, reused=kept)
    # resuming a finished search measures nothing and rewrites the same outputs
    assert main(_argv(setup, out, "--resume")) == 0
    assert json.loads((out / "search.json").read_text())["extra"]["cache"]["misses"] == 0
    assert _result(out) == _result(clean)


def test_torn_last_line_is_dropped(setup, clean: Path, tmp_path: Path, capsys) -> None:
    lines = _journal_lines(clean)
    out = tmp_path / "torn"
    out.mkdir()
    (out / JOURNAL).write_text("".join(lines[:6]) + lines[6][: len(lines[6]) // 2])  # killed mid-append
    _reuse(clean, out, setup, capsys, reused=5)


def test_damage_before_the_last_line_is_refused(setup, clean: Path, tmp_path: Path, capsys) -> None:
    lines = _journal_lines(clean)
    out = tmp_path / "damaged"
    out.mkdir()
    text = "".join(lines[:3]) + "garbage\n" + "".join(lines[3:6])
    (out / JOURNAL).write_text(text)
    assert main(_argv(setup, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 4" in err and "--force" in err
    assert (out / JOURNAL).read_text() == text and not (out / "search.json").exists()


@pytest.mark.parametrize(
    "change, field",
    [
        (["--seed", "2"], "seed"),
        (["--val-images", "32"], "val_images"),
        (["--strategy", "random"], "strategy"),
        (None, "budgets_ms"),
    ],
    ids=["seed", "val-images", "strategy", "budget"],
)
def test_journal_of_another_search_is_refused(setup, clean: Path, tmp_path: Path, capsys, change, field) -> None:
    out = tmp_path / "other"
    out.mkdir()
    shutil.copy(clean / JOURNAL, out / JOURNAL)
    before = (out / JOURNAL).read_bytes()
    argv = _argv(setup, out, "--resume", budget=None if change else str(setup["budget2"]))
    if change:
        argv = [*argv[:-1], *change, argv[-1]]  # later options win in argparse
    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwnas: error: search journal") and err.count("\n") == 1
    assert "belongs to another search" in err and field in err and "--force" in err
    assert time.perf_counter() - t0 < 5.0  # refused before the checkpoint is loaded
    assert (out / JOURNAL).read_bytes() == before and not (out / "search.json").exists()


def test_fresh_search_over_a_journal_needs_resume_or_force(setup, clean: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "again"
    out.mkdir()
    (out / JOURNAL).write_text("".join(_journal_lines(clean)[:4]))
    assert main(_argv(setup, out)) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--force" in err and err.count("\n") == 1
    assert main(_argv(setup, out, "--force")) == 0  # --force starts a new journal
    capsys.readouterr()
    assert _journal_lines(out) == _journal_lines(clean)


def _wait_for_lines(path: Path, proc: subprocess.Popen[str], n: int, *, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.005)
    raise AssertionError(f"search ended (rc {proc.poll()}) or stalled before {n} journal lines; make it longer")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_real_signal_then_resume(setup, clean: Path, tmp_path: Path, capsys, sig: signal.Signals) -> None:
    out = tmp_path / "signalled"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwnas", *_argv(setup, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_lines(out / JOURNAL, proc, 1 + 3)  # header + 3 measurements
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        lines = [line for line in err.splitlines() if line.startswith("hwnas:")]
        assert len(lines) == 1 and lines[0].startswith("hwnas: interrupted: ") and "--resume" in lines[0]
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    _, measured = read_journal(out / JOURNAL)  # whatever instant it died at, the journal loads
    assert 3 <= len(measured) < EVALUATIONS and not (out / "search.json").exists()
    _reuse(clean, out, setup, capsys, reused=len(measured))
