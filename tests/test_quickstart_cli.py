"""A real `hwnas quickstart` end to end, sized to seconds: train → search → export on Fashion-MNIST, JSON summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"


@pytest.mark.slow
def test_quickstart_json_summary(tmp_path, capsys, fashion_dir):
    out = tmp_path / "qs"
    code = main(
        [
            "quickstart",
            "--out",
            str(out),
            "--steps",
            "12",
            "--evaluations",
            "2",
            "--finetune-epochs",
            "0",
            "--no-int8",
            "--lut",
            str(TINY_LUT),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["seconds"]) == {"latency table", "train", "search", "export"}
    assert summary["lut_reused"] is True and summary["files"]["lut"] == str(TINY_LUT)
    assert 0.0 < summary["test_acc"] <= 1.0 and summary["int8_test_acc"] is None
    assert summary["predicted_ms"] > 0 and summary["measured_ms"] > 0
    assert summary["predicted_error"] == pytest.approx(summary["measured_ms"] / summary["predicted_ms"] - 1)
    assert summary["max_abs_diff"] <= 1e-4
    import torch

    assert summary["torch_device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # --device's default
    search = json.loads((out / "search.json").read_text())
    assert search["arch"] == summary["arch"] and search["predicted_ms"] <= summary["budget_ms"]
    assert search["torch_device"] == summary["torch_device"]  # the candidates were scored there
    card = json.loads(Path(summary["files"]["card"]).read_text())
    assert card["arch"] == summary["arch"] and card["accuracy"]["test_acc"] == pytest.approx(summary["test_acc"])
    assert card["training"]["torch_device"] == summary["torch_device"]
    assert json.loads((out / "run" / "config.json").read_text())["torch_device"] == summary["torch_device"]
    for key in ("run", "onnx", "card"):
        assert Path(summary["files"][key]).exists()


def test_quickstart_refuses_a_missing_lut(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--lut", str(tmp_path / "none.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwnas: error: LUT") and err.count("\n") == 1
    assert not (tmp_path / "qs").exists()
