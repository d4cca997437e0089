"""`hwnas train --resume` with a new length continues to it; changed options are refused; `--max-steps` is exact in
every mode (issue 27, item 6)."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import time
from pathlib import Path

import pytest
import torch
from search_lut import write_table
from train_config import small_config

from hwnas.cli.main import main
from hwnas.latency import LatencyPredictor, latency_range_ms, load_lut
from hwnas.space import get_space, with_io
from hwnas.train import CHECKPOINT, TrainConfig, config_from_dict, load_run, load_strategy, train
from hwnas.train.nas_config import NasConfig
from hwnas.train.nas_loop import _cosine_lr
from hwnas.train.strategy import extend_schedule, schedule_step


class Stop(Exception):
    pass


def _cfg(mode: str, **kw: object) -> TrainConfig:
    # the CLI loads the same synthetic dataset (2048 images) with the default validation split, so a run made here
    # resumes through `hwnas train`
    default_val_size = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "val_size")
    overrides = {"width": 0.25, "max_steps": 20, "checkpoint_every": 5, "val_size": default_val_size}
    return small_config(mode, **{**overrides, **kw})


def _stop_at(step: int):  # noqa: ANN202
    def hook(done: int) -> None:
        if done == step:
            raise Stop

    return hook


def _lr_rows(run: Path) -> dict[int, float]:
    with open(run / "metrics.csv", newline="") as fh:
        return {int(r["step"]): float(r["lr"]) for r in csv.DictReader(fh) if r["lr"]}


def _files(run: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what ran before (e.g. a library run logging through an earlier CLI call's handler)
    rc = main(["train", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwnas: error: "), err
    return lines[0]


def test_schedule_step_stretches_the_rest_of_the_schedule() -> None:
    assert [schedule_step(s, 10) for s in (0, 3, 10)] == [0.0, 3.0, 10.0]  # never extended: the step itself
    knots, span = extend_schedule((), 0, old_total=10, new_total=20, done=4)
    assert (knots, span) == (((4, 4.0),), 10)
    assert schedule_step(4, 20, knots=knots, span=span) == 4.0  # the resume step keeps its place
    assert schedule_step(12, 20, knots=knots, span=span) == pytest.approx(4 + 8 * 6 / 16)
    assert schedule_step(20, 20, knots=knots, span=span) == 10.0  # the run still ends on the schedule's end
    # a second extension keeps the first stretch for the steps already taken
    knots2, span2 = extend_schedule(knots, span, old_total=20, new_total=40, done=12)
    assert knots2 == ((4, 4.0), (12, pytest.approx(7.0))) and span2 == 10
    assert schedule_step(8, 40, knots=knots2, span=span2) == schedule_step(8, 20, knots=knots, span=span)
    assert schedule_step(40, 40, knots=knots2, span=span2) == 10.0
    # a finished run continues at its final point; nothing trained yet: a plain schedule over the new total
    done_knots, _ = extend_schedule((), 0, old_total=10, new_total=30, done=10)
    assert {schedule_step(s, 30, knots=done_knots, span=10) for s in (10, 20, 30)} == {10.0}
    assert extend_schedule((), 0, old_total=10, new_total=30, done=0) == ((), 0)
    # the NAS modes' cosine goes through the same clock: no jump at the resume step, 0 at the new end
    cfg = NasConfig(mode="fbnet", target_ms=1.0, lr=0.1)
    ext = dataclasses.replace(cfg, schedule_knots=knots, schedule_steps=span)
    assert _cosine_lr(ext, 4, 20) == pytest.approx(_cosine_lr(cfg, 4, 10))
    assert _cosine_lr(ext, 20, 20) == pytest.approx(0.0, abs=1e-12)


def test_resume_with_larger_max_steps_continues_a_finished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train(_cfg("spos", max_steps=20), run, progress=False)
    before = _lr_rows(run)
    rc, out, _ = _cli(capsys, "--resume", "--out", str(run), "--max-steps", "40", "--json", "--no-progress")
    assert rc == 0 and json.loads(out)["steps"] == 40
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert (ckpt["step"], ckpt["total_steps"]) == (40, 40)
    stored = json.loads((run / "config.json").read_text())
    assert stored["max_steps"] == 40 and stored["schedule_knots"] == [[20, 20.0]] and stored["schedule_steps"] == 20
    extra = ("space_hash", "preprocess", "world_size", "torch_device", "amp_used")  # facts of the run, not config
    assert config_from_dict(ckpt["config"]) == config_from_dict({k: v for k, v in stored.items() if k not in extra})
    lrs = _lr_rows(run)
    assert sorted(lrs) == list(range(1, 41))
    assert all(lrs[s] == before[s] for s in range(1, 21))  # metrics.csv continues: the first 20 rows are kept
    assert lrs[21] <= lrs[20] * (1 + 1e-6)  # no jump up at the resume step...
    cfg = load_run(run).config
    assert all(lr == pytest.approx(cfg.lr * cfg.lr_end_fraction) for s, lr in lrs.items() if s > 20)  # ...the floor
    # a later plain resume keeps the new length (and an allowed runtime option is applied and recorded)
    rc, out, _ = _cli(capsys, "--resume", "--out", str(run), "--checkpoint-every", "7", "--json", "--no-progress")
    assert rc == 0 and json.loads(out)["steps"] == 40
    assert json.loads((run / "config.json").read_text())["checkpoint_every"] == 7


@pytest.mark.parametrize(("mode", "first", "cut", "longer"), [("spos", 12, 6, 24), ("bignas", 8, 4, 16)])
def test_extension_mid_schedule_stretches_the_lr_and_survives_a_plain_resume(
    mode: str, first: int, cut: int, longer: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    cfg = _cfg(mode, max_steps=first, checkpoint_every=cut // 2)
    with pytest.raises(Stop):
        train(cfg, run, progress=False, on_step=_stop_at(cut))
    extended = dataclasses.replace(
        config_from_dict(torch.load(run / CHECKPOINT, weights_only=True)["config"]), max_steps=longer
    )
    with pytest.raises(Stop):  # the extended run is interrupted too ...
        train(extended, run, resume=True, progress=False, on_step=_stop_at(cut + 3))
    rc, out, _ = _cli(capsys, "--resume", "--out", str(run), "--json", "--no-progress")  # ... and resumed plainly
    assert rc == 0 and json.loads(out)["steps"] == longer
    run_cfg = load_run(run).config
    assert run_cfg.max_steps == longer and run_cfg.schedule_knots == ((cut, float(cut)),)
    assert run_cfg.schedule_steps == first
    lrs = _lr_rows(run)
    assert sorted(lrs) == list(range(1, longer + 1))
    lr_factor = load_strategy(mode).lr_factor
    for step, lr in lrs.items():  # every row: the old schedule up to the cut, then its rest stretched to `longer`
        clock = schedule_step(step - 1, longer, knots=run_cfg.schedule_knots, span=first)
        assert lr == pytest.approx(run_cfg.lr * lr_factor(clock, first, run_cfg), rel=1e-5)
    # the resume step takes the LR the old schedule gave it (no jump), only the steps after it are stretched
    assert lrs[cut + 1] == pytest.approx(run_cfg.lr * lr_factor(cut, first, run_cfg), rel=1e-5)
    assert lrs[cut + 1] <= lrs[cut] * (1 + 1e-6)
    warm = max(1, int(run_cfg.warmup_fraction * first))
    tail = [lrs[s] for s in range(warm + 1, longer + 1)]
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(tail))  # decays monotonically to the end
    assert tail[-1] == pytest.approx(run_cfg.lr * run_cfg.lr_end_fraction, rel=0.1)


def test_resume_with_larger_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(_cfg("spos", epochs=0.02, max_steps=0), run, progress=False)  # 448 steps per epoch -> 9 steps
    assert load_run(run).step == 9
    rc, out, _ = _cli(capsys, "--resume", "--out", str(run), "--epochs", "0.04", "--json", "--no-progress")
    assert rc == 0 and json.loads(out)["steps"] == math.ceil(0.04 * 448) == 18
    assert json.loads((run / "config.json").read_text())["epochs"] == 0.04
    assert sorted(_lr_rows(run)) == list(range(1, 19))


def test_resume_refuses_changed_options_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(_cfg("spos", max_steps=4), run, progress=False)
    files = _files(run)
    cases = {
        ("--lr", "0.2"): "--lr 0.2 differs from the 0.1 that",
        ("--dataset", "fashion-mnist"): "--dataset fashion-mnist differs from the synthetic",
        ("--width", "0.5"): "--width 0.5 differs from the 0.25",
        ("--augment", "none"): "--augment none differs from the crop-flip",
        ("--mode", "bignas"): "--mode bignas differs from the spos",
        ("--max-random-resolution",): "--max-random-resolution on differs from the off",
        ("--max-steps", "3"): "has already trained 4 steps; a length of 3 steps",
        ("--lut", "x.csv"): "--lut applies only to --mode fbnet",
        ("--force",): "--resume continues",
    }
    for args, fragment in cases.items():
        rc, out, err = _cli(capsys, "--resume", "--out", str(run), *args, "--no-progress")
        assert rc == 2 and out == "" and fragment in _error_line(err), (args, err)
        assert _files(run) == files, args  # nothing written
    assert "may change only --epochs, --max-steps" in _error_line(
        _cli(capsys, "--resume", "--out", str(run), "--seed", "3")[2]
    )


def test_new_run_refuses_options_its_mode_does_not_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    cases = {
        ("--mode", "spos", "--target-ms", "1"): "--target-ms applies only to --mode fbnet",
        ("--mode", "fbnet", "--augment", "none"): "--augment is not used by --mode fbnet",
        ("--mode", "fbnet", "--checkpoint-every", "3"): "--checkpoint-every is not used by --mode fbnet",
        ("--mode", "darts", "--lut", "x.csv", "--target-ms", "1", "--epochs", "2.5"): "trains whole epochs",
    }
    for args, fragment in cases.items():
        rc, _, err = _cli(capsys, "--dataset", "synthetic", "--out", str(out), *args)
        assert rc == 2 and fragment in _error_line(err), (args, err)
        assert not out.exists()


@pytest.fixture()
def tiny_lut(tmp_path: Path) -> tuple[Path, float]:
    space = with_io(get_space("mbv3-tiny", width=0.25), in_channels=1, num_classes=10)  # synthetic: 1 channel
    path = write_table(space, tmp_path / "lut.csv")
    low, high = latency_range_ms(LatencyPredictor(load_lut(path, space=space), space))
    return path, round((low + high) / 2, 3)


def test_fbnet_max_steps_is_exact_and_resumable(
    tiny_lut: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lut, target = tiny_lut
    run = tmp_path / "run"
    t0 = time.perf_counter()
    rc, out, _ = _cli(
        capsys,
        "--dataset",
        "synthetic",
        "--mode",
        "fbnet",
        "--width",
        "0.25",
        "--lut",
        str(lut),
        "--target-ms",
        str(target),
        "--max-steps",
        "5",
        "--batch-size",
        "16",
        "--warmup-epochs",
        "0",
        "--out",
        str(run),
        "--json",
        "--no-progress",
    )
    assert rc == 0 and time.perf_counter() - t0 < 60  # not an epoch of 112 steps, let alone 6
    summary = json.loads(out)
    assert summary["steps"] == 5 and summary["epochs"] == pytest.approx(5 / 112, abs=1e-4)
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert (ckpt["step"], ckpt["total_steps"]) == (5, 5)
    history = json.loads(ckpt["nas"]["history"])
    assert [(h["epoch"], h["step"]) for h in history] == [(0, 5)]
    assert json.loads((run / "arch.json").read_text())["steps"] == 5
    alpha5 = ckpt["nas"]["alpha"]
    assert not torch.equal(alpha5, torch.zeros_like(alpha5))  # no warm-up: α trained in these 5 steps

    rc, out, _ = _cli(capsys, "--resume", "--out", str(run), "--max-steps", "10", "--json", "--no-progress")
    assert rc == 0 and json.loads(out)["steps"] == 10
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert (ckpt["step"], ckpt["total_steps"]) == (10, 10)
    assert [(h["epoch"], h["step"]) for h in json.loads(ckpt["nas"]["history"])] == [(0, 10)]  # the epoch row grows
    assert not torch.equal(ckpt["nas"]["alpha"], alpha5)
    nas = json.loads((run / "config.json").read_text())["nas"]
    assert nas["max_steps"] == 10 and nas["schedule_knots"] == [[5, 5.0]] and nas["schedule_steps"] == 5
    with open(run / "metrics.csv", newline="") as fh:
        assert [r["step"] for r in csv.DictReader(fh)] == ["10"]

    files = _files(run)
    rc, _, err = _cli(capsys, "--resume", "--out", str(run), "--target-ms", str(target * 2))
    assert rc == 2 and f"--target-ms {target * 2:g} differs from the {target:g}" in _error_line(err)
    rc, _, err = _cli(capsys, "--resume", "--out", str(run), "--max-steps", "4")
    assert rc == 2 and "already trained 10 weight steps" in _error_line(err)
    assert _files(run) == files


def test_nas_resume_with_larger_epochs(
    tiny_lut: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lut, target = tiny_lut
    run = tmp_path / "run"
    rc, _, _ = _cli(
        capsys,
        "--dataset",
        "synthetic",
        "--mode",
        "proxyless",
        "--width",
        "0.25",
        "--lut",
        str(lut),
        "--target-ms",
        str(target),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "8",
        "--warmup-epochs",
        "0",
        "--out",
        str(run),
        "--no-progress",
    )
    assert rc == 0
    rc, out, _ = _cli(capsys, "--resume", "--out", str(run), "--epochs", "3", "--json", "--no-progress")
    assert rc == 0 and json.loads(out)["steps"] == 6 and json.loads(out)["epochs"] == 3
    history = json.loads(torch.load(run / CHECKPOINT, weights_only=True)["nas"]["history"])
    assert [(h["epoch"], h["step"]) for h in history] == [(0, 2), (1, 4), (2, 6)]
    assert json.loads((run / "arch.json").read_text())["epochs"] == 3
