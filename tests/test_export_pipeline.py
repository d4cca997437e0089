"""The export pipeline and `hwnas export` on a (briefly) trained Fashion-MNIST run: files, parity, int8, model card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
import yaml

from hwnas.cli.main import main
from hwnas.export import load_model_card, read_onnx_metadata
from hwnas.export.pipeline import ExportConfig, export_run
from hwnas.latency import DeviceProfile, load_lut, predict_ms
from hwnas.latency.profiler import profile_space
from hwnas.latency.runtime import Loaded
from hwnas.space import Arch, get_space, space_hash
from hwnas.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
ARCH = Arch.parse("r28/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3")
QUICK = {"warmup_s": 0.05, "warmup": 1, "rounds": 2, "repeats": 3, "max_cv": 0.5, "remeasure": 0}


class FakeRunner:
    """A fake device for the LUT only (each model 'takes' 0.01 ms per input channel); measured latency stays real."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile, self.clock = profile, 0

    def timer(self) -> int:
        return self.clock

    def load(self, model: torch.nn.Module, input_shape: tuple[int, ...]) -> Loaded:
        def run() -> None:
            self.clock += int(0.01e6 * input_shape[1])

        return Loaded(run, lambda: None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion_dir: Path):  # type: ignore[no-untyped-def]
    """A real bignas run on Fashion-MNIST (a few steps), a YAML profile 'quick' and a LUT for it at 28 px."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 OpenMP threads on a loaded 2-core machine were ~30x slower here
    root = tmp_path_factory.mktemp("export")
    cfg = TrainConfig(
        space="mbv3-tiny",
        dataset="fashion-mnist",
        data_dir=str(fashion_dir),
        mode="bignas",
        epochs=1.0,
        max_steps=2,
        batch_size=8,
        val_size=64,
        recal_batches=1,
        eval_batch_size=64,
        checkpoint_every=10,
    )
    train(cfg, root / "run", progress=False)
    profile_yaml = root / "quick.yaml"
    profile_yaml.write_text(yaml.safe_dump({"name": "quick", "calib_subnets": 0, **QUICK}))
    profile = DeviceProfile(name="quick", calib_subnets=0, **QUICK)
    fake = FakeRunner(profile)
    lut = root / "tables" / "quick" / "mbv3-tiny.csv"
    profile_space(get_space("mbv3-tiny"), profile, out_path=lut, resolutions=(28,), runner=fake, timer=fake.timer)
    yield root, profile_yaml, lut
    torch.set_num_threads(before)


@pytest.mark.slow
def test_export_run_writes_verified_files_and_a_real_card(trained) -> None:  # type: ignore[no-untyped-def]
    root, profile_yaml, lut = trained
    out = root / "out"
    cfg = ExportConfig(
        int8=True,
        target=str(profile_yaml),
        device="cpu",
        lut=lut,
        parity_images=300,
        calib_images=64,
        recalib_batches=2,
        test_images=1000,
    )
    r = export_run(root / "run", ARCH, out, cfg=cfg)
    assert r.parity.n_images == 300 and r.parity.max_abs_diff <= 1e-4 and r.parity.top1_agreement == 1.0
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx", "model.onnx", "model_card.json"]
    assert read_onnx_metadata(r.onnx)["hwnas.arch"] == str(ARCH)
    onnx.checker.check_model(str(r.onnx), full_check=True)

    card = load_model_card(r.card)
    assert card["arch"] == str(ARCH) and Arch.parse(card["arch"]) == ARCH
    assert card["space"]["hash"] == space_hash(get_space("mbv3-tiny"))
    assert card["dataset"] == "fashion-mnist"
    pre = card["preprocess"]
    assert pre["resolution"] == 28 and pre["channels"] == 1 and pre["resize"] in ("none", "bilinear")
    assert pre["mean"] == pytest.approx([0.286]) and pre["std"] == pytest.approx([0.353])
    acc = card["accuracy"]
    assert acc["test_acc"] == r.test_acc and acc["n_images"] == 1000
    assert abs(acc["onnx_test_acc"] - acc["test_acc"]) <= 0.002  # same model, same images, ORT vs torch
    assert acc["int8_test_acc"] == r.int8_test_acc and 0.0 <= r.int8_test_acc <= 1.0
    lat = card["latency"]
    assert lat["device"] == "quick" and lat["measured_ms"] == r.measured_ms and r.measured_ms > 0
    assert lat["int8_measured_ms"] == r.int8_measured_ms and r.int8_measured_ms > 0
    space = get_space("mbv3-tiny")
    assert lat["predicted_ms"] == pytest.approx(predict_ms(load_lut(lut, space=space), space, ARCH))
    assert lat["machine_speed_factor"] is None  # this LUT has no calibration subnets to re-time
    from hwnas.blocks import arch_macs, arch_params

    assert card["macs"] == arch_macs(space, ARCH) and card["params"] == arch_params(space, ARCH)
    assert card["files"]["onnx"]["bytes"] == r.onnx.stat().st_size and len(card["files"]["onnx"]["sha256"]) == 64
    assert card["versions"]["onnxruntime"] and card["versions"]["torch"] and card["date"]
    assert card["parity"]["top1_agreement"] == 1.0
    assert card["parity"]["torch_device"] == card["training"]["torch_device"] == r.torch_device == "cpu"

    # The standalone deployer script (numpy + onnxruntime, no hwnas) reproduces the card's accuracy.
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "classify_onnx.py"), str(r.card)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{acc['onnx_test_acc']:.4f}" in done.stdout


def test_cli_export_json_and_bad_inputs(trained, capsys) -> None:  # type: ignore[no-untyped-def]
    root, profile_yaml, lut = trained
    out = root / "cli"
    search = root / "search.json"
    search.write_text(json.dumps({"arch": str(ARCH), "lut": str(lut)}))
    argv = [
        "export",
        "--run",
        str(root / "run"),
        "--search",
        str(search),
        "--out",
        str(out),
        "--target",
        str(profile_yaml),
        "--lut",
        str(lut),
        "--parity-images",
        "100",
        "--test-images",
        "500",
        "--json",
    ]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"onnx", "max_abs_diff", "top1_agreement", "test_acc", "predicted_ms", "measured_ms", "int8"} <= set(payload)
    assert payload["int8"] is None and payload["max_abs_diff"] <= 1e-4 and payload["top1_agreement"] == 1.0
    assert Path(payload["onnx"]).is_file() and payload["measured_ms"] > 0

    def fails(args: list[str], needle: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("hwnas: error:") and needle in err and "Traceback" not in err

    fails(argv, "already exists")  # no --force
    base = ["export", "--out", str(root / "x"), "--target", str(profile_yaml)]
    fails(base + ["--run", str(root / "nope"), "--arch", str(ARCH)], "not found")
    fails(base + ["--run", str(root / "run"), "--arch", "r28/k4e3"], "kernel")
    fails(
        base + ["--run", str(root / "run"), "--arch", "r224/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3"],
        "not in space",
    )
    fails(base + ["--run", str(root / "run"), "--search", str(root / "missing.json")], "not found")
    fails(base + ["--run", str(root / "run"), "--arch", str(ARCH), "--target", "no-such-device"], "unknown device")
    fails(  # --device is the torch device: a latency profile name there points to --target
        base + ["--run", str(root / "run"), "--arch", str(ARCH), "--device", "cpu-ort-1t"],
        "--device takes cpu, cuda or cuda:N; the latency profile is --target cpu-ort-1t",
    )
    fails(base + ["--run", str(root), "--arch", str(ARCH)], "checkpoint")  # a folder without checkpoint.pt
    fails(["export", "--run", str(root / "run"), "--arch", str(ARCH)], "--out")


def test_exported_files_are_timed_beside_drift_references(tmp_path):
    """The speed factor compares reference subnets timed now with their build-time latency (here: timed just before,
    so the machine has barely drifted) and every file gets its own measurement."""
    import random

    from hwnas.blocks import build_model
    from hwnas.export.onnx import export_onnx
    from hwnas.export.pipeline import measure_exported
    from hwnas.latency import measure_model_ms
    from hwnas.latency.drift import Reference
    from hwnas.space import sample

    space = get_space("mbv3-tiny")
    profile = DeviceProfile(name="quick", **QUICK)
    archs = [sample(space, random.Random(i), resolution=28) for i in range(3)]
    refs = [Reference(a, measure_model_ms(build_model(space, a), (1, 1, 28, 28), profile).p50_ms) for a in archs[1:]]
    path = export_onnx(build_model(space, archs[0]).eval(), tmp_path / "m.onnx", space=space, arch=archs[0])
    ms, speed = measure_exported([path], (1, 1, 28, 28), profile, space=space, references=refs)
    assert set(ms) == {path} and ms[path] > 0
    assert speed is not None and 0.4 < speed < 2.5
    assert measure_exported([path], (1, 1, 28, 28), profile, space=space)[1] is None
