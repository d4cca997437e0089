"""`hwnas import-ofa` against Once-for-All's own code (PyPI `ofa`): the imported subnets compute what OFA's
`set_active_subnet` forward computes, the imported predictors predict what OFA's predictors predict, and the run folder
works with `search` (predictor-scored), `export` and `hwnas.load_run`.
"""

from __future__ import annotations

import copy
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hwnas
from hwnas.cli import main
from hwnas.ofa.predictor import predictor_from_state
from hwnas.ofa.run import import_ofa
from hwnas.space import Arch, get_space

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from ofa_random import (
    OFA_RESOLUTIONS,
    arch_string,
    calibrate_bn,
    ofa_predictor,
    ofa_supernet,  # noqa: E402
    ofa_tutorial_predictor,
    random_arch_dict,
    save_released,
)

REPO = Path(__file__).resolve().parents[1]
MBV3_LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3.csv"


def _set_active(net: torch.nn.Module, arch: dict) -> None:
    net.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])


def _relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.slow
@pytest.mark.parametrize("width", [1.0, 1.2])
def test_subnets_match_ofa_forward(tmp_path, width):
    """≥ 10 random subnets over all four resolutions: `load_run(...).subnet(arch)` and the supernet forward equal OFA's
    dynamic forward to 1e-5 relative. BN statistics are set for each subnet, so its logits depend on the input."""
    net = ofa_supernet(width, seed=0)
    rng = random.Random(int(width * 10))
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for i in range(10):
        arch = random_arch_dict(rng, resolution=OFA_RESOLUTIONS[i % 4])
        r = arch["image_size"]
        _set_active(net, arch)
        calibrate_bn(net, torch.randn(8, 3, r, r, generator=gen), seed=i)
        ckpt = save_released(net, tmp_path / "ofa.pth")
        import_ofa(ckpt, tmp_path / f"run{i}")
        run = hwnas.load_run(tmp_path / f"run{i}")
        x = torch.randn(4, 3, r, r, generator=gen)
        with torch.no_grad():
            theirs = net(x)
            subnet = run.subnet(arch_string(arch))(x)
            supernet = run.supernet(x, Arch.parse(arch_string(arch)))
        spread = float((theirs - theirs.mean(0)).abs().max() / theirs.abs().max())
        assert spread > 1e-2, f"logits barely depend on the input ({spread:.1e}): the check would prove nothing"
        worst = max(worst, _relative(subnet, theirs), _relative(supernet, theirs))
    assert run.space.width == width
    assert worst <= 1e-5, worst


def test_parity_check_detects_a_wrong_kernel_transform(tmp_path):
    """Negative control: transposing one imported 7→5 transform changes the output far beyond the 1e-5 tolerance."""
    net = ofa_supernet(1.0, seed=3)
    arch = random_arch_dict(random.Random(5), resolution=160)
    arch["ks"][0], arch["d"][0] = 5, 2
    _set_active(net, arch)
    calibrate_bn(net, torch.randn(8, 3, 160, 160, generator=torch.Generator().manual_seed(0)), seed=0)
    import_ofa(save_released(net, tmp_path / "ofa.pth"), tmp_path / "run")
    run = hwnas.load_run(tmp_path / "run")
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = net(x)
        assert _relative(run.subnet(arch_string(arch))(x), theirs) <= 1e-5
        matrix = run.supernet.stages[0][0].kernel_transforms["7to5"]
        matrix.copy_(matrix.t().clone())
        assert _relative(run.subnet(arch_string(arch))(x), theirs) > 1e-3


def _rename(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """The same tensors under the other spellings OFA's files use."""
    out = {}
    for key, value in state.items():
        if layout == "flat":  # single-level names, as a static subnet would write them
            key = key.replace(".bn.bn.", ".bn.").replace(".conv.conv.weight", ".conv.weight")
            key = key.replace(".linear.linear.", ".linear.")
        elif layout == "dataparallel":
            key = "module." + key
        out[key] = value
    return out


def test_every_ofa_layout_imports_the_same_weights(tmp_path):
    net = ofa_supernet(1.0, seed=2)
    files = {
        "released": save_released(net, tmp_path / "released.pth"),
        "current": save_released(net, tmp_path / "current.pth", layout="current"),
    }
    for layout in ("flat", "dataparallel"):
        files[layout] = tmp_path / f"{layout}.pth"
        torch.save(_rename(net.state_dict(), layout), files[layout])  # a bare state dict, no {"state_dict": ...}
    states = {}
    for layout, path in files.items():
        import_ofa(path, tmp_path / f"run-{layout}")
        states[layout] = hwnas.load_run(tmp_path / f"run-{layout}").supernet.state_dict()
    reference = states.pop("released")
    for layout, state in states.items():
        assert state.keys() == reference.keys(), layout
        assert all(torch.equal(state[k], reference[k]) for k in reference), layout
    assert any(k.startswith("blocks.1.mobile_inverted_conv.") for k in torch.load(files["released"])["state_dict"])


def test_exported_onnx_matches_ofa(tmp_path):
    import onnxruntime as ort

    from hwnas.export.onnx import export_onnx

    net = ofa_supernet(1.2, seed=4)
    arch = random_arch_dict(random.Random(9), resolution=192)
    _set_active(net, arch)
    calibrate_bn(net, torch.randn(8, 3, 192, 192, generator=torch.Generator().manual_seed(2)), seed=1)
    import_ofa(save_released(net, tmp_path / "ofa.pth"), tmp_path / "run")
    run = hwnas.load_run(tmp_path / "run")
    parsed = Arch.parse(arch_string(arch))
    path = export_onnx(run.subnet(parsed), tmp_path / "model.onnx", space=run.space, arch=parsed)
    x = torch.randn(3, 3, 192, 192, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        theirs = net(x)
    assert _relative(ours, theirs) <= 1e-5


def test_predictor_matches_ofa_predict_acc(tmp_path):
    predictor = ofa_predictor(seed=1)
    torch.save(predictor.state_dict(), tmp_path / "acc.pth")
    ours = predictor_from_state(torch.load(tmp_path / "acc.pth", weights_only=True), get_space("mbv3"), where="test")
    archs = [random_arch_dict(random.Random(s)) for s in range(200)]
    with torch.no_grad():
        theirs = predictor.predict_acc(copy.deepcopy(archs)).numpy()
    got = ours.predict([Arch.parse(arch_string(a)) for a in archs])
    assert ours.kind == "ofa-mlp"
    assert np.ptp(theirs) > 1e-3  # predictions differ between archs, so equality means something
    assert np.abs(got - theirs).max() <= 1e-6


def test_tutorial_predictor_matches_ofa(tmp_path):
    tutorial = ofa_tutorial_predictor(seed=2)
    torch.save(tutorial.model.state_dict(), tmp_path / "acc_predictor.pth")
    ours = predictor_from_state(
        torch.load(tmp_path / "acc_predictor.pth", weights_only=True), get_space("mbv3"), where="test"
    )
    archs = [random_arch_dict(random.Random(100 + s)) for s in range(100)]
    population = [{"ks": a["ks"], "e": a["e"], "d": a["d"], "r": [a["image_size"]]} for a in archs]
    theirs = tutorial.predict_accuracy(copy.deepcopy(population)).numpy()[:, 0]
    got = ours.predict([Arch.parse(arch_string(a)) for a in archs])
    assert ours.kind == "ofa-tutorial" and np.ptp(theirs) > 1e-3
    assert np.abs(got - theirs).max() <= 1e-6


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """An OFA w1.0 supernet + predictor, imported through the command line."""
    root = tmp_path_factory.mktemp("ofa")
    ckpt = save_released(ofa_supernet(1.0, seed=7), root / "ofa_mbv3_d234_e346_k357_w1.0")
    torch.save(ofa_predictor(seed=7).state_dict(), root / "acc.pth")
    assert main(["import-ofa", str(ckpt), "--out", str(root / "run"), "--predictor", str(root / "acc.pth")]) == 0
    return root / "run"


def test_import_writes_a_run_folder(imported, capsys, tmp_path):
    config = json.loads((imported / "config.json").read_text())
    assert config["space"] == "mbv3" and config["width"] == 1.0 and config["dataset"] == "imagenet-folder"
    assert config["source"]["kind"] == "ofa" and len(config["source"]["sha256"]) == 64
    assert config["predictor"]["kind"] == "ofa-mlp" and config["preprocess"]["center_crop"] == 224
    run = hwnas.load_run(imported)
    assert run.finished and run.predictor is not None and run.space.num_classes == 1000
    ckpt = imported.parent / "ofa_mbv3_d234_e346_k357_w1.0"
    assert main(["import-ofa", str(ckpt), "--out", str(tmp_path / "again"), "--width", "1.0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["width"] == 1.0 and summary["predictor"] is None and summary["parameters"] > 7_000_000


def test_predictor_scored_search_on_the_mbv3_table(imported, tmp_path, capsys):
    """No data: the run's predictor scores candidates, every winner fits its budget, search.json says what scored."""
    out = tmp_path / "search"
    code = main(
        [
            "search",
            "--run",
            str(imported),
            "--lut",
            str(MBV3_LUT),
            "--budgets",
            "1.0,2.0,4.0",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    payload = json.loads((out / "search.json").read_text())
    assert payload["scorer"] == "predictor" and payload["extra"]["predictor"]["kind"] == "ofa-mlp"
    run = hwnas.load_run(imported)
    predictor = predictor_from_state(run.predictor["state"], run.space, where="test")
    for entry, budget in zip(payload["budgets"], (1.0, 2.0, 4.0)):
        assert entry["predicted_ms"] <= budget and entry["evaluated"] > 1000
        assert entry["accuracy"] == pytest.approx(float(predictor.predict([Arch.parse(entry["arch"])])[0]), abs=1e-6)
    assert [p["scorer"] for p in printed] == ["predictor"] * 3
    assert main(["report", str(out)]) == 0 and (out / "pareto.png").stat().st_size > 1000


def _imagenet_folder(root: Path, classes: int, *, per_class: int = 1) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.png")
    return root


def test_export_of_an_imported_subnet_on_an_imagenet_folder(imported, tmp_path):
    """`hwnas export` of an imported run: ImageNet preprocessing in the card, ONNX parity on the folder's images."""
    from hwnas.export.pipeline import ExportConfig, export_run

    data = _imagenet_folder(tmp_path / "imagenet", 1000)
    arch = Arch.parse("r128/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3")
    cfg = ExportConfig(
        measure=False,
        data_dir=data,
        test_images=40,
        parity_images=40,
        recalib_batches=2,
        batch_size=32,
        calib_images=32,
    )
    result = export_run(imported, arch, tmp_path / "export", cfg=cfg)
    card = json.loads(result.card.read_text())
    assert card["preprocess"]["center_crop"] == 128 and card["preprocess"]["resize_shorter"] == 147
    assert card["preprocess"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert card["accuracy"]["n_images"] == 40 and card["dataset"] == "imagenet-folder"
    assert result.parity.max_abs_diff <= 1e-4 and result.parity.top1_agreement == 1.0


@pytest.mark.slow
def test_measured_search_of_an_imported_run_on_an_imagenet_folder(imported, tmp_path, capsys):
    """`--scorer measured --data-dir`: candidates are extracted, BN-recalibrated on training images and scored on val/."""
    data = _imagenet_folder(tmp_path / "imagenet", 1000)
    out = tmp_path / "search"
    code = main(
        [
            "search",
            "--run",
            str(imported),
            "--lut",
            str(MBV3_LUT),
            "--budget-ms",
            "1.2",
            "--scorer",
            "measured",
            "--data-dir",
            str(data),
            "--evaluations",
            "3",
            "--population",
            "2",
            "--val-images",
            "24",
            "--calib-images",
            "32",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    payload = json.loads((out / "search.json").read_text())
    assert printed["scorer"] == payload["scorer"] == "measured" and payload["evaluated"] == 3
    assert payload["predicted_ms"] <= 1.2 and 0.0 <= payload["accuracy"] <= 1.0
    journal = (out / "search.journal.jsonl").read_text().splitlines()
    assert len(journal) == 1 + 3  # header + one line per measured candidate
