"""ONNX export, ORT parity, int8 and the deployer's preprocessing recipe, on real Fashion-MNIST images."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from archs import TINY_ARCHS

from hwnas.blocks import build_model
from hwnas.data import batches, load_dataset
from hwnas.errors import HwnasError
from hwnas.export import (
    check_onnx,
    check_parity,
    export_onnx,
    make_preprocess,
    onnx_accuracy,
    onnx_logits,
    quantize_int8,
    read_onnx_metadata,
)
from hwnas.space import Arch, get_space, sample, space_hash

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import classify_onnx  # noqa: E402  (the standalone deployer script: numpy + onnxruntime only)

SPACE = get_space("mbv3-tiny")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():  # type: ignore[no-untyped-def]
    """1 thread: on a shared, oversubscribed 2-core box 2 OpenMP threads made these forwards ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fashion(fashion_dir: Path):  # type: ignore[no-untyped-def]
    return load_dataset("fashion-mnist", fashion_dir, val_size=1000, seed=0)


def _images(split, n: int, resolution: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return next(batches(split, batch_size=n, resolution=resolution))[0]


def _realistic(arch: Arch, images: torch.Tensor, *, seed: int) -> torch.nn.Module:
    """A static net with data-driven BN statistics and O(1) logits, so parity is checked where it matters."""
    torch.manual_seed(seed)  # test-local determinism for init_weights inside build_model
    model = build_model(SPACE, arch)
    torch.nn.init.normal_(model[-1].classifier.weight, std=0.05)
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.momentum = None  # the one pass below sets the exact batch statistics
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


def _briefly_trained(arch: Arch, fashion, *, seed: int, steps: int = 40) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    """A few SGD steps on real images (~2 s): enough for class-separated logits, as in a model one would quantize."""
    torch.manual_seed(seed)
    model = build_model(SPACE, arch)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step, (x, y) in enumerate(
        batches(fashion.train, batch_size=64, resolution=arch.resolution, shuffle=True, generator=gen)
    ):
        if step == steps:
            break
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


ARCHS = [Arch.parse(TINY_ARCHS[0]), sample(SPACE, random.Random(1))]  # the smallest arch and one sampled arch


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_export_round_trips_through_onnxruntime(arch: Arch, fashion, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x = _images(fashion.test, 48, arch.resolution)
    model = _realistic(arch, x, seed=0)
    path = export_onnx(model, tmp_path / "m.onnx", space=SPACE, arch=arch)
    parity = check_parity(model, path, x, batch_size=16)
    assert parity.n_images == 48
    assert parity.max_abs_diff <= 1e-4
    assert parity.top1_agreement == 1.0
    with torch.no_grad():
        assert float(model(x).abs().max()) > 0.1  # logits are not trivially ~0
    meta = read_onnx_metadata(path)
    assert meta["hwnas.arch"] == str(arch)
    assert Arch.parse(meta["hwnas.arch"]) == arch
    assert meta["hwnas.space"] == "mbv3-tiny" and meta["hwnas.space_hash"] == space_hash(SPACE)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 17
    check_onnx(path)


def test_dynamic_batch_axis(fashion, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    arch = Arch.parse(TINY_ARCHS[0])
    x = _images(fashion.test, 7, arch.resolution)
    model = _realistic(arch, _images(fashion.train, 64, arch.resolution), seed=1)
    path = export_onnx(model, tmp_path / "m.onnx", space=SPACE, arch=arch)
    one = onnx_logits(path, x[:1])
    seven = onnx_logits(path, x)
    assert one.shape == (1, 10) and seven.shape == (7, 10)
    np.testing.assert_allclose(one[0], seven[0], atol=1e-5)


def test_int8_path_runs_and_keeps_most_predictions(fashion, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    arch = Arch.parse(TINY_ARCHS[0])
    train_x = _images(fashion.train, 64, arch.resolution)
    model = _briefly_trained(arch, fashion, seed=2)  # random nets have near-tied logits that any rounding flips
    fp32 = export_onnx(model, tmp_path / "m.onnx", space=SPACE, arch=arch)
    int8 = quantize_int8(fp32, tmp_path / "m.int8.onnx", train_x[:32].numpy())
    meta = read_onnx_metadata(int8)
    assert meta["hwnas.dtype"] == "int8" and meta["hwnas.arch"] == str(arch)
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert int8.stat().st_size < fp32.stat().st_size
    test_x, test_y = next(batches(fashion.test, batch_size=200, resolution=arch.resolution))
    agree = (onnx_logits(int8, test_x).argmax(1) == onnx_logits(fp32, test_x).argmax(1)).mean()
    assert agree >= 0.8
    acc = onnx_accuracy(int8, test_x, test_y)
    assert 0.0 <= acc <= 1.0


def test_deployer_recipe_matches_training_preprocessing(fashion) -> None:  # type: ignore[no-untyped-def]
    """tools/classify_onnx.py, given only the card's preprocess, feeds the model what training fed it."""
    for resolution in (24, 32):
        spec = make_preprocess(fashion.preprocess, resolution=resolution)
        ours = torch.from_numpy(classify_onnx.preprocess(fashion.test.images[:50, 0].numpy(), spec))
        theirs = next(batches(fashion.test, batch_size=50, resolution=resolution))[0]
        assert ours.shape == theirs.shape == (50, 1, resolution, resolution)
        assert float((ours - theirs).abs().max()) < 1e-4


def test_bad_inputs_raise_hwnas_error(tmp_path: Path) -> None:
    arch = Arch.parse(TINY_ARCHS[0])
    model = build_model(SPACE, arch).eval()
    with pytest.raises(HwnasError, match="not in space"):
        export_onnx(model, tmp_path / "m.onnx", space=SPACE, arch=Arch.parse("r224/k3e3"))
    with pytest.raises(HwnasError, match="not found"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    with pytest.raises(HwnasError, match="not found"):
        quantize_int8(tmp_path / "missing.onnx", tmp_path / "q.onnx", np.zeros((1, 1, 28, 28), np.float32))
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(HwnasError):
        read_onnx_metadata(bad)
    with pytest.raises(HwnasError):
        check_onnx(bad)
    path = export_onnx(model, tmp_path / "m.onnx", space=SPACE, arch=arch)
    with pytest.raises(HwnasError, match="expects input"):
        onnx_logits(path, np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(HwnasError, match="NCHW"):
        onnx_logits(path, np.zeros((28, 28), np.float32))
    with pytest.raises(HwnasError, match="channels"):
        make_preprocess({"channels": 3, "mean": [0.5], "std": [0.5]}, resolution=28)
    assert not list(tmp_path.glob(".*tmp"))  # failed writes leave no temp files behind
