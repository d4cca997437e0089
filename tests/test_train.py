"""Training: every mode runs, resume == uninterrupted, checkpoints load safely, the CLI contract."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from train_config import small_config

from hwnas.cli.main import main
from hwnas.data import Dataset
from hwnas.errors import HwnasError
from hwnas.space import get_space, largest, smallest
from hwnas.supernet import extract
from hwnas.train import CHECKPOINT, available_modes, evaluate_arch, load_run, train


def test_builtin_modes_are_discovered() -> None:
    assert {"ofa", "bignas", "spos"} <= set(available_modes())


@pytest.mark.parametrize("mode", ["bignas", "spos", "ofa"])
def test_each_mode_trains_and_writes_a_run(mode: str, synthetic: Dataset, tmp_path: Path) -> None:
    # ofa over 4 steps passes through all four phases (full, kernel, depth, expand)
    cfg = small_config(mode, max_steps=4 if mode == "ofa" else 2)
    result = train(cfg, tmp_path, data=synthetic, progress=False)
    assert result.steps == cfg.max_steps and 0 <= result.val_acc_max <= 1 and result.img_per_s > 0
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,phase,lr,loss")
    phases = {r.split(",")[2] for r in rows[1:]}
    if mode == "ofa":
        assert phases == {"full", "kernel", "depth", "expand"}
    run = load_run(tmp_path)
    assert run.step == cfg.max_steps and run.finished and run.config == cfg
    assert not run.supernet.training


def test_resume_after_interrupt_equals_uninterrupted(synthetic: Dataset, tmp_path: Path) -> None:
    cfg = small_config("bignas", max_steps=3, checkpoint_every=100)
    full = train(cfg, tmp_path / "full", data=synthetic, progress=False)

    def interrupt(step: int) -> None:
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the real Ctrl-C path: flag, checkpoint, KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", data=synthetic, progress=False, on_step=interrupt)
    assert load_run(tmp_path / "cut").step == 1
    resumed = train(cfg, tmp_path / "cut", resume=True, data=synthetic, progress=False)
    assert resumed.steps == full.steps == 3
    a = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert resumed.val_acc_max == full.val_acc_max
    steps = [line.split(",")[0] for line in (tmp_path / "cut" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [line.split(",")[0] for line in (tmp_path / "full" / "metrics.csv").read_text().splitlines()[1:]]


def test_load_run_errors(synthetic: Dataset, tmp_path: Path) -> None:
    with pytest.raises(HwnasError, match="not found"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HwnasError, match="no checkpoint.pt"):
        load_run(tmp_path / "empty")
    train(small_config("spos", max_steps=1), tmp_path / "ok", data=synthetic, progress=False)
    blob = (tmp_path / "ok" / CHECKPOINT).read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / CHECKPOINT).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(HwnasError, match="truncated"):
        load_run(tmp_path / "cut")
    with pytest.raises(HwnasError, match="trained on space"):
        load_run(tmp_path / "ok", space=get_space("mbv3-tiny"))  # the run is mbv3-tiny at width 0.5


def test_extracted_subnet_agrees_with_supernet_after_recalibration(synthetic: Dataset, tmp_path: Path) -> None:
    train(small_config("spos", max_steps=1), tmp_path, data=synthetic, progress=False)
    run = load_run(tmp_path)
    for arch in (largest(run.space), smallest(run.space)):
        acc = evaluate_arch(run.supernet, synthetic, arch, recal_batches=1, batch_size=64)
        x = next(iter([synthetic.val.images[:16].float()]))
        x = (x / 255 - synthetic.val.mean[0]) / synthetic.val.std[0]
        x = torch.nn.functional.interpolate(x, size=arch.resolution, mode="bilinear")
        with torch.no_grad():
            assert (extract(run.supernet, arch)(x) - run.supernet(x, arch)).abs().max() <= 1e-5
        assert 0 <= acc <= 1


def test_cli_train_json_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "synthetic",
        "--mode",
        "spos",
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--width",
        "0.5",
        "--json",
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"run", "steps", "epochs", "val_acc_max", "val_acc_min", "img_per_s", "torch_device", "amp"}
    assert summary["steps"] == 2
    gpu = torch.cuda.is_available()  # the defaults: cuda when available, and bf16 autocast there
    assert (summary["torch_device"], summary["amp"]) == (("cuda:0", "bf16") if gpu else ("cpu", "none"))
    assert main(args) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    assert main(["train", "--dataset", "synthetic", "--mode", "nope", "--out", str(tmp_path / "x")]) == 2
    assert main(["train", "--out", str(out), "--dataset", "synthetic", "--resume", "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
