"""ImageNet-style image folders (`root/train/<class>/`, `root/val/<class>/`) for evaluating ImageNet-trained supernets.

ImageNet is far too large to decode into memory (1.28 M training images), so only a seeded sample is decoded: a few
thousand training images for re-estimating BatchNorm statistics, and the validation images to score on. Each image gets
the standard ImageNet eval transform of torchvision and Once-for-All (resize the shorter side to `resolution / 0.875`,
centre-crop `resolution`), training images included, since OFA recalibrates BatchNorm on eval-style images. The
result is an ordinary `Dataset` of uint8 tensors, so batching, normalisation and evaluation work unchanged.

Memory: each image takes 3 × resolution² bytes, e.g. 10,000 images at 224 take 1.5 GB.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hwnas.data.datasets import Dataset, Split
from hwnas.errors import HwnasError

__all__ = [
    "IMAGENET_DATASET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CROP_FRACTION",
    "imagenet_classes",
    "imagenet_preprocess",
    "load_imagenet_folder",
]

IMAGENET_DATASET = "imagenet-folder"  # the dataset name runs record (imported ImageNet supernets); data via --data-dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel, in [0, 1] units, as every torchvision/OFA ImageNet model expects
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875  # the centre crop keeps 224 of 256 pixels of the shorter side

_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})  # compared lower-cased, so ImageNet's .JPEG counts
_MAX_WORKERS = 4  # PIL releases the GIL while decoding and resizing, so a few threads decode in parallel


def _resize_shorter(resolution: int) -> int:
    return int(math.ceil(resolution / CROP_FRACTION))


def _check_resolution(resolution: int) -> None:
    if resolution < 1:
        raise HwnasError(f"resolution {resolution} must be a positive number of pixels, e.g. 224")


def _class_dirs(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir())
    except OSError as exc:
        raise HwnasError(f"cannot list {folder} ({exc.strerror}); make the folder readable") from None


def imagenet_classes(root: Path) -> tuple[str, ...]:
    """The sorted class folder names of `root/train`; the label of a class is its index in this tuple.

    With ImageNet's synset folders (n01440764, ...) this is the output order of torchvision and Once-for-All models.
    Raises `HwnasError` if train/ or val/ is missing or val/ has different class folders.
    """
    root = Path(root)
    train_dir, val_dir = root / "train", root / "val"
    for folder in (train_dir, val_dir):
        if not folder.is_dir():
            raise HwnasError(
                f"ImageNet folder {root} has no {folder.name}/ folder; it needs train/<class>/ and "
                "val/<class>/ image folders (the ImageFolder layout)"
            )
    classes = _class_dirs(train_dir)
    if not classes:
        raise HwnasError(f"{train_dir} has no class folders; put each class's images in {train_dir}/<class>/")
    val_classes = _class_dirs(val_dir)
    if not val_classes and any(Path(name).suffix.lower() in _SUFFIXES for name in os.listdir(val_dir)):
        raise HwnasError(
            f"{val_dir} holds images directly; sort them into val/<class>/ folders named like the "
            "train/ class folders (for ILSVRC2012, e.g. with its valprep.sh script)"
        )
    if val_classes != classes:
        only_train = sorted(set(classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(classes))
        raise HwnasError(
            f"class folders of {val_dir} differ from {train_dir} (only in train/: "
            f"{', '.join(only_train[:5]) or '-'}; only in val/: {', '.join(only_val[:5]) or '-'}); "
            "both need the same class folders"
        )
    return tuple(classes)


def imagenet_preprocess(resolution: int) -> dict[str, object]:
    """What a deployed model's caller must do to an image, with the resize and centre crop spelled out (model cards)."""
    _check_resolution(resolution)
    return {
        "resolution": resolution,
        "channels": 3,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "resize": "bilinear",
        "resize_shorter": _resize_shorter(resolution),
        "center_crop": resolution,
    }


def _list_images(folder: Path, classes: Sequence[str]) -> list[list[str]]:
    """Sorted image file names per class, from one directory listing per class (no stat of any file)."""
    names: list[list[str]] = []
    for cls in classes:
        try:
            with os.scandir(folder / cls) as entries:
                names.append(sorted(e.name for e in entries if os.path.splitext(e.name)[1].lower() in _SUFFIXES))
        except OSError as exc:
            raise HwnasError(f"cannot list {folder / cls} ({exc.strerror}); make the folder readable") from None
    if not any(names):
        raise HwnasError(f"no images found under {folder}; expected {folder}/<class>/*.jpg (or .jpeg, .png, .bmp)")
    return names


def _pick(folder: Path, classes: Sequence[str], count: int, rng: np.random.Generator) -> tuple[list[Path], np.ndarray]:
    """`count` files of `folder` (all if fewer exist) chosen without replacement, in the seeded order of the choice."""
    if count == 0:
        return [], np.zeros(0, dtype=np.int64)
    names = _list_images(folder, classes)
    starts = np.concatenate([[0], np.cumsum([len(n) for n in names])])
    chosen = rng.choice(int(starts[-1]), size=min(count, int(starts[-1])), replace=False)
    labels = np.searchsorted(starts, chosen, side="right") - 1
    paths = [folder / classes[c] / names[c][i - starts[c]] for i, c in zip(chosen.tolist(), labels.tolist())]
    return paths, labels.astype(np.int64)


def _load_image(path: Path, resolution: int) -> np.ndarray:
    """The ImageNet eval transform (torchvision `Resize(ceil(r / 0.875))` + `CenterCrop(r)`) as uint8 3×r×r."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise HwnasError(f"cannot decode image {path} ({exc}); delete or replace the file") from None
    w, h = rgb.size
    short, long = (w, h) if w <= h else (h, w)
    new_short = _resize_shorter(resolution)
    new_long = int(new_short * long / short)  # truncated, as torchvision computes it
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        rgb = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = int(round((new_h - resolution) / 2.0))
    left = int(round((new_w - resolution) / 2.0))
    crop = rgb.crop((left, top, left + resolution, top + resolution))
    return np.asarray(crop, dtype=np.uint8).transpose(2, 0, 1)


def _decode(paths: Sequence[Path], *, resolution: int, progress: bool, desc: str) -> np.ndarray:
    """Decode `paths` into one preallocated N×3×r×r array; the first bad file (in order) raises `HwnasError`."""
    from tqdm import tqdm

    out = np.empty((len(paths), 3, resolution, resolution), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = _load_image(paths[i], resolution)

    pool = ThreadPoolExecutor(max_workers=min(_MAX_WORKERS, os.cpu_count() or 1))
    try:
        with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
            for _ in pool.map(work, range(len(paths))):
                bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error, skip the images not yet decoded
    return out


def load_imagenet_folder(
    root: Path,
    *,
    resolution: int,
    train_images: int,
    val_images: int,
    seed: int = 0,
    num_classes: int | None = None,
    progress: bool = False,
) -> Dataset:
    """Decode a seeded sample of an ImageNet-style folder at `resolution` (eval transform), as a `Dataset`.

    `root` holds `train/<class>/*.jpg` and `val/<class>/*.jpg` (also .jpeg, .png, .bmp, any case); labels are the
    indices of the sorted class folder names (`imagenet_classes`). `train_images` training images (for BatchNorm
    recalibration) and `val_images` validation images are drawn at random with `numpy.random.default_rng(seed)`,
    independently of each other; asking for more than a folder holds gives all of its images. Both splits come in the
    seeded random order of that draw, so any prefix of a split (a few batches) is a class-mixed sample. `test` is the
    validation split, since ImageNet's labelled val set is what accuracies are reported on. `num_classes`, when given
    (the model's number of outputs), must equal the number of class folders.

    Only the chosen files are opened; the rest are seen only in directory listings. Memory is 3 × resolution² bytes
    per image: 10,000 images at 224 take 1.5 GB.
    """
    root = Path(root)
    _check_resolution(resolution)
    if train_images < 0 or val_images < 1:
        raise HwnasError(f"train_images {train_images} must be >= 0 and val_images {val_images} >= 1")
    if not root.is_dir():
        raise HwnasError(f"ImageNet folder {root} not found; pass the folder that holds train/ and val/")
    classes = imagenet_classes(root)
    if num_classes is not None and num_classes != len(classes):
        raise HwnasError(
            f"ImageNet folder {root} has {len(classes)} class folders in train/, but the model has "
            f"{num_classes} outputs; class folders must map to the outputs in sorted order"
        )
    train_rng, val_rng = np.random.default_rng(seed).spawn(2)
    train_paths, train_labels = _pick(root / "train", classes, train_images, train_rng)  # list both folders
    val_paths, val_labels = _pick(root / "val", classes, val_images, val_rng)  # before decoding either
    train = Split(
        torch.from_numpy(_decode(train_paths, resolution=resolution, progress=progress, desc="train")),
        torch.from_numpy(train_labels),
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    val = Split(
        torch.from_numpy(_decode(val_paths, resolution=resolution, progress=progress, desc="val")),
        torch.from_numpy(val_labels),
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    return Dataset(
        name=IMAGENET_DATASET,
        train=train,
        val=val,
        test=val,
        num_classes=len(classes),
        channels=3,
        image_size=resolution,
        center_crop=True,
    )
