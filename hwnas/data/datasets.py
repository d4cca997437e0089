"""Datasets as pre-decoded uint8 tensors: Fashion-MNIST (idx .gz), CIFAR-10 (binary batches), ImageFolder, synthetic.

Small vision datasets fit in memory decoded (Fashion-MNIST: 47 MB), so training never decodes or augments per sample in
Python: `hwnas.data.batches` indexes, crops, flips and resizes whole batches as tensors. The validation split is carved
from the training set (val is for search and architecture parameters); the test set is kept for final reports only.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwnas.errors import HwnasError

__all__ = ["Split", "Dataset", "DATASET_NAMES", "DEFAULT_DIRS", "load_dataset"]

DATASET_NAMES = ("fashion-mnist", "cifar10", "imagefolder", "synthetic")
DEFAULT_DIRS = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "cifar10": Path("/usr/share/datasets/cifar-10-batches-bin"),
}
_STATS = {  # per-channel mean/std of the training images, in [0, 1] units
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


@dataclass(frozen=True)
class Split:
    """Images (uint8, N×C×H×W) and labels (int64, N) plus the normalisation every batch gets."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    channels: int
    image_size: int
    center_crop: bool = False  # images were resized (shorter side) and centre-cropped: ImageNet's eval transform

    @property
    def preprocess(self) -> dict[str, object]:
        """What a deployed model's caller must do to an image (stored in run config and model cards)."""
        out: dict[str, object] = {
            "resolution": self.image_size,
            "channels": self.channels,
            "mean": list(self.train.mean),
            "std": list(self.train.std),
            "resize": "bilinear",
        }
        if self.center_crop:
            out["center_crop"] = self.image_size
        return out

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise HwnasError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)  # type: ignore[no-any-return]


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """One idx file (LeCun's MNIST format): magic (0x0000 08 ndim), big-endian dims, uint8 data."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise HwnasError(
            f"missing {path.name} in {path.parent}; pass --data-dir with the Fashion-MNIST idx .gz files "
            "or install dataset-fashion-mnist"
        ) from None
    except (OSError, EOFError) as exc:
        raise HwnasError(f"cannot read {path}: {exc}; re-download the file") from None
    if len(raw) < 4 + 4 * ndim or raw[2] != 0x08 or raw[3] != ndim:
        raise HwnasError(f"{path} is not an idx file with {ndim} dims; expected the Fashion-MNIST .gz files")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise HwnasError(f"{path} is truncated ({data.size} of {int(np.prod(dims))} values); re-download it")
    return data.reshape(dims)


def _fashion_mnist(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xs = _read_idx(root / "train-images-idx3-ubyte.gz", ndim=3)
    ys = _read_idx(root / "train-labels-idx1-ubyte.gz", ndim=1)
    xt = _read_idx(root / "t10k-images-idx3-ubyte.gz", ndim=3)
    yt = _read_idx(root / "t10k-labels-idx1-ubyte.gz", ndim=1)
    return xs[:, None], ys, xt[:, None], yt


def _read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary version: records of 1 label byte + 3072 pixel bytes (CHW). No pickle is ever loaded."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError:
        raise HwnasError(
            f"missing {path.name} in {path.parent}; pass --data-dir with the CIFAR-10 binary version "
            "(cifar-10-batches-bin)"
        ) from None
    if raw.size == 0 or raw.size % 3073:
        raise HwnasError(f"{path} is not a CIFAR-10 binary batch (size {raw.size} is not a multiple of 3073)")
    rec = raw.reshape(-1, 3073)
    return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)


def _cifar10(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    if (root / "data_batch_1").exists() or (root / "cifar-10-batches-py").is_dir():
        raise HwnasError(
            f"{root} holds the pickled CIFAR-10 (python version), which hwnas refuses to unpickle; "
            "download the binary version (cifar-10-binary.tar.gz) and pass its folder as --data-dir"
        )
    parts = [_read_cifar_bin(root / f"data_batch_{i}.bin") for i in range(1, 6)]
    xt, yt = _read_cifar_bin(root / "test_batch.bin")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt


def _image_folder(root: Path, *, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """`root/train/<class>/*.{png,jpg}` and `root/test/<class>/...` (or `val/`), decoded once, resized to a square."""
    from PIL import Image

    train_dir = root / "train"
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise HwnasError(f"{root} needs train/<class>/ and test/<class>/ (or val/<class>/) image folders")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise HwnasError(f"{train_dir} has {len(classes)} class folders; need at least 2")

    def read(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for label, cls in enumerate(classes):
            for file in sorted((folder / cls).glob("*")) if (folder / cls).is_dir() else []:
                if file.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                    continue
                with Image.open(file) as img:
                    rgb = img.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
                images.append(np.asarray(rgb).transpose(2, 0, 1))
                labels.append(label)
        if not images:
            raise HwnasError(f"no images found under {folder}; expected {folder}/<class>/*.png")
        return np.stack(images), np.asarray(labels, dtype=np.int64)

    xs, ys = read(train_dir)
    xt, yt = read(test_dir)
    return xs, ys, xt, yt, classes


def _synthetic(
    seed: int, *, n_train: int, n_test: int, channels: int, size: int, classes: int
) -> tuple[np.ndarray, ...]:
    """Learnable random data for tests: each class is a fixed random template plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(classes, channels, size, size))

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, size=n)
        noise = rng.normal(0, 40, size=(n, channels, size, size))
        return np.clip(templates[y] + noise, 0, 255).astype(np.uint8), y.astype(np.int64)

    xs, ys = make(n_train)
    xt, yt = make(n_test)
    return xs, ys, xt, yt


def _stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = torch.from_numpy(images[:10_000]).float().div_(255)
    return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).tolist())


def load_dataset(
    name: str,
    data_dir: Path | None = None,
    *,
    val_size: int = 5000,
    seed: int = 0,
    image_size: int = 32,
    synthetic_size: int = 2048,
) -> Dataset:
    """Load a dataset fully into memory as uint8 tensors, with a seeded train/val split carved from train."""
    if name not in DATASET_NAMES:
        raise HwnasError(f"unknown dataset {name!r}; available: {', '.join(DATASET_NAMES)}")
    root = Path(data_dir) if data_dir is not None else DEFAULT_DIRS.get(name)
    if name != "synthetic" and (root is None or not root.is_dir()):
        raise HwnasError(f"dataset folder {root} for {name} not found; pass --data-dir PATH")
    if name == "fashion-mnist":
        assert root is not None
        xs, ys, xt, yt = _fashion_mnist(root)
        mean, std = _STATS[name]
    elif name == "cifar10":
        assert root is not None
        xs, ys, xt, yt = _cifar10(root)
        mean, std = _STATS[name]
    elif name == "imagefolder":
        assert root is not None
        xs, ys, xt, yt, _ = _image_folder(root, image_size=image_size)
        mean, std = _stats(xs)
    else:
        xs, ys, xt, yt = _synthetic(
            seed, n_train=synthetic_size, n_test=synthetic_size // 4, channels=1, size=28, classes=10
        )
        mean, std = _stats(xs)
        val_size = min(val_size, len(ys) // 8)  # tests and smoke runs keep the default val_size
    if not 0 < val_size < len(ys):
        raise HwnasError(f"val_size {val_size} must be between 1 and the training set size {len(ys)} - 1")
    perm = torch.randperm(len(ys), generator=torch.Generator().manual_seed(seed))
    x_all, y_all = torch.from_numpy(np.array(xs, copy=True)), torch.from_numpy(ys.astype(np.int64))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    num_classes = int(max(ys.max(), yt.max())) + 1
    return Dataset(
        name=name,
        train=Split(x_all[train_idx].contiguous(), y_all[train_idx].contiguous(), mean, std),
        val=Split(x_all[val_idx].contiguous(), y_all[val_idx].contiguous(), mean, std),
        test=Split(torch.from_numpy(np.array(xt, copy=True)), torch.from_numpy(yt.astype(np.int64)), mean, std),
        num_classes=num_classes,
        channels=int(xs.shape[1]),
        image_size=int(xs.shape[-1]),
    )
