"""`--device` and `--amp` on train, export and quickstart, on the CPU: a GPU the machine lacks is one line, export's old
`--device PROFILE` points to `--target`, fp16 is CUDA-only, and bf16 training on the CPU runs and is recorded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from hwnas.cli.main import main
from hwnas.errors import HwnasError

REPO = Path(__file__).resolve().parents[1]
TINY_LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"
TINY_ARCH = "r32/k5e4,k3e6,k7e3/k3e3,k5e6/k7e4,k7e4,k3e3,k5e6/k3e6,k3e4/k5e3,k7e6,k3e4"
TRAIN = [
    "train",
    "--dataset",
    "synthetic",
    "--mode",
    "bignas",
    "--max-steps",
    "2",
    "--batch-size",
    "4",
    "--width",
    "0.5",
    "--no-progress",
]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")


def _one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwnas: error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


@no_cuda
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([*TRAIN, "--out", "{tmp}/run"], id="train-bignas"),
        pytest.param(
            [*TRAIN[:4], "fbnet", "--lut", str(TINY_LUT), "--target-ms", "1.0", "--out", "{tmp}/run"],
            id="train-fbnet",
        ),
        pytest.param(["export", "--run", "{tmp}/run", "--arch", TINY_ARCH, "--out", "{tmp}/export"], id="export"),
        pytest.param(["quickstart", "--out", "{tmp}/qs", "--lut", str(TINY_LUT)], id="quickstart"),
    ],
)
def test_device_cuda_without_a_gpu_is_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[0] == "export":  # export needs a run to get as far as the device
        assert main([*TRAIN, "--device", "cpu", "--out", str(tmp_path / "run")]) == 0
        capsys.readouterr()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    line = _one_error_line(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--device", "cuda"])
    assert "--device cuda: CUDA is not available here" in line and "use --device cpu" in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_export_device_takes_a_torch_device_and_points_profiles_to_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "--run", str(tmp_path / "run"), "--arch", TINY_ARCH, "--out", str(tmp_path / "e")]
    line = _one_error_line(capsys, [*argv, "--device", "cpu-ort-1t"])
    assert line == "hwnas: error: --device takes cpu, cuda or cuda:N; the latency profile is --target cpu-ort-1t"
    assert not (tmp_path / "e").exists()
    from hwnas.export.pipeline import ExportConfig

    with pytest.raises(HwnasError, match="the latency profile is --target cpu-ort-2t"):
        ExportConfig(device="cpu-ort-2t")
    assert ExportConfig(device="cuda:1").device == "cuda:1"  # a spec; availability is checked when the export runs


def test_train_rejects_a_device_that_is_no_torch_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error_line(capsys, [*TRAIN, "--out", str(tmp_path / "run"), "--device", "gpu"])
    assert "expected cpu, cuda or cuda:N" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("mode", ["bignas", "fbnet"])
def test_amp_fp16_on_the_cpu_is_one_line(mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nas = ["--lut", str(TINY_LUT), "--target-ms", "1.0"] if mode == "fbnet" else []
    argv = [*TRAIN[:4], mode, *TRAIN[5:], *nas, "--out", str(tmp_path / "run"), "--device", "cpu", "--amp", "fp16"]
    line = _one_error_line(capsys, argv)
    assert "--amp fp16 needs a CUDA device" in line and "--amp bf16 or none" in line
    assert not (tmp_path / "run").exists()


def test_bf16_training_on_the_cpu_runs_records_amp_and_resumes_in_another_precision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--device", "cpu", "--amp", "bf16", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and (summary["torch_device"], summary["amp"]) == ("cpu", "bf16")
    assert 0.0 <= summary["val_acc_max"] <= 1.0  # evaluated in float32 after bf16 training
    config = json.loads((run / "config.json").read_text())
    assert (config["amp"], config["amp_used"], config["torch_device"]) == ("bf16", "bf16", "cpu")
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["torch_device"] for r in rows if r["loss"]} == {"cpu"}
    assert all(float(r["loss"]) > 0 for r in rows if r["loss"])

    # precision is how a run computes, not what it is: a resume may change it, and records the change
    resumed = [*TRAIN, "--out", str(run), "--resume", "--max-steps", "3", "--amp", "none", "--json"]
    assert main(resumed) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    config = json.loads((run / "config.json").read_text())
    assert (config["amp"], config["amp_used"]) == ("none", "none")
    from hwnas.train import read_checkpoint

    payload = read_checkpoint(run / "checkpoint.pt")
    assert payload["step"] == 3 and payload["config"]["amp"] == "none" and payload["scaler"] == {}


@pytest.mark.parametrize("mode", ["fbnet", "proxyless", "darts", "enas"])
def test_latency_aware_modes_train_in_bf16_on_the_cpu_and_record_it(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from search_lut import write_table

    from hwnas.latency import LatencyPredictor, latency_range_ms, load_lut
    from hwnas.space import get_space, with_io

    space = with_io(get_space("mbv3-tiny", width=0.25), in_channels=1, num_classes=10)  # synthetic: 1 channel
    lut = write_table(space, tmp_path / "lut.csv")
    low, high = latency_range_ms(LatencyPredictor(load_lut(lut, space=space), space))
    run = tmp_path / "run"
    argv = [*TRAIN[:4], mode, "--width", "0.25", "--lut", str(lut), "--target-ms", f"{(low + high) / 2:.3f}"]
    argv += ["--max-steps", "2", "--batch-size", "8", "--warmup-epochs", "0", "--out", str(run), "--no-progress"]
    assert main([*argv, "--device", "cpu", "--amp", "bf16", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and (summary["torch_device"], summary["amp"]) == ("cpu", "bf16")
    config = json.loads((run / "config.json").read_text())
    assert (config["nas"]["amp"], config["amp_used"], config["torch_device"]) == ("bf16", "bf16", "cpu")
    assert config["device"] == load_lut(lut, space=space).device  # "device" stays the LUT's latency profile
    alpha = torch.load(run / "checkpoint.pt", weights_only=True)["nas"]["alpha"]
    assert torch.isfinite(alpha).all() and bool(alpha.abs().sum() > 0)  # α stepped (no warm-up) from a bf16 forward

    # the precision may change on resume (the run's length and how it computes are not its identity)
    assert main(["train", "--resume", "--out", str(run), "--max-steps", "3", "--amp", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["amp"] == "none"
    config = json.loads((run / "config.json").read_text())
    assert (config["nas"]["amp"], config["amp_used"]) == ("none", "none")


@pytest.mark.parametrize("mode", ["fbnet", "enas"])
def test_latency_aware_modes_refuse_torchrun(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun (WORLD_SIZE > 1) every rank would train its own α and write the same files: rank 0 refuses
    with one line, the other ranks exit 2 silently, and nothing is written."""
    argv = [*TRAIN[:4], mode, "--lut", str(TINY_LUT), "--target-ms", "1.0", "--out", str(tmp_path / "run")]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    line = _one_error_line(capsys, argv)
    assert f"--mode {mode} trains in one process" in line and "bignas" in line
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "" and not (tmp_path / "run").exists()
