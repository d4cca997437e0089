"""Data: real Fashion-MNIST slice, batch augmentation, CIFAR-10 binary reader, ImageFolder, refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwnas.data import augment_uint8, batches, epoch_order, load_dataset
from hwnas.errors import HwnasError


def test_fashion_mnist_splits_and_batches(fashion_dir: Path) -> None:
    data = load_dataset("fashion-mnist", fashion_dir, val_size=5000, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (55_000, 5000, 10_000)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (1, 28, 28)
    assert data.num_classes == 10 and data.channels == 1
    assert set(data.val.labels.unique().tolist()) == set(range(10))
    x, y = next(batches(data.val, batch_size=256, resolution=36))
    assert x.shape == (256, 1, 36, 36) and x.dtype == torch.float32 and y.shape == (256,)
    assert abs(x.mean().item()) < 0.3 and 0.7 < x.std().item() < 1.3  # normalised with the dataset statistics
    again = load_dataset("fashion-mnist", fashion_dir, val_size=5000, seed=0)
    assert torch.equal(again.val.labels, data.val.labels)  # the split is a function of the seed


def test_augment_is_a_padded_crop_or_its_flip() -> None:
    images = torch.randint(0, 256, (16, 2, 12, 12), dtype=torch.uint8)
    out = augment_uint8(images, generator=torch.Generator().manual_seed(0), pad=3)
    padded = F.pad(images, (3, 3, 3, 3))
    flips = 0
    for i in range(16):
        crops = [padded[i, :, a : a + 12, b : b + 12] for a in range(7) for b in range(7)]
        plain = any(torch.equal(out[i], c) for c in crops)
        flipped = any(torch.equal(out[i], c.flip(2)) for c in crops)
        assert plain or flipped
        flips += int(flipped and not plain)
    assert 0 < flips < 16


def test_epoch_order_is_a_seeded_permutation() -> None:
    a = epoch_order(100, seed=3, epoch=1)
    assert torch.equal(a, epoch_order(100, seed=3, epoch=1))
    assert not torch.equal(a, epoch_order(100, seed=3, epoch=2))
    assert sorted(a.tolist()) == list(range(100))


def _write_cifar_bin(path: Path, n: int, rng: np.random.Generator) -> None:
    rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1).astype(np.uint8)
    path.write_bytes(rec.tobytes())


def test_cifar10_binary_is_read_and_pickle_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    for i in range(1, 6):
        _write_cifar_bin(root / f"data_batch_{i}.bin", 20, rng)
    _write_cifar_bin(root / "test_batch.bin", 10, rng)
    data = load_dataset("cifar10", tmp_path, val_size=10)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 10)
    assert data.train.images.shape[1:] == (3, 32, 32)
    pickled = tmp_path / "py"
    pickled.mkdir()
    (pickled / "data_batch_1").write_bytes(b"\x80\x04not really")
    with pytest.raises(HwnasError, match="refuses to unpickle"):
        load_dataset("cifar10", pickled)


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (20, 24), (i * 40, 0, 200 if cls == "dog" else 0)).save(folder / f"{i}.png")
    data = load_dataset("imagefolder", tmp_path, val_size=2, image_size=16)
    assert data.train.images.shape == (6, 3, 16, 16) and data.num_classes == 2 and len(data.test) == 8


def test_truncated_idx_and_missing_folder_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(HwnasError, match="not found"):
        load_dataset("fashion-mnist", tmp_path / "nope")
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + (100).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 50)
    with pytest.raises(HwnasError, match="truncated"):
        load_dataset("fashion-mnist", tmp_path)
