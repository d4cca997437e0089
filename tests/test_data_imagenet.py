"""ImageNet-style folders: class order, the resize + centre-crop transform, seeded sampling, and refusals of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hwnas.data import IMAGENET_MEAN, IMAGENET_STD, batches, imagenet_classes, imagenet_preprocess, load_imagenet_folder
from hwnas.errors import HwnasError

CLASSES = ("n01440764", "n01443537", "n01484850")  # synset-like names, written out of order below on purpose
TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2


def _image(label: int, index: int, *, portrait: bool) -> Image.Image:
    """Channel `label` is bright (distinct per image), the other two a dim gradient, so the label is readable back."""
    w, h = (30, 40) if portrait else (40, 30)
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    pixels[..., label] = 190 + 10 * index
    pixels[..., [c for c in range(3) if c != label]] = (np.arange(w) * 2)[None, :, None]
    return Image.fromarray(pixels)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for label, cls in reversed(list(enumerate(CLASSES))):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                suffix = ".JPEG" if i % 2 else ".png"
                _image(label, i, portrait=i % 2 == 1).save(folder / f"{cls}_{i}{suffix}", quality=95)
            (folder / "notes.txt").write_text("not an image")  # skipped by suffix
    return tmp_path


def _labels_from_pixels(images: torch.Tensor) -> list[int]:
    return images.float().mean((2, 3)).argmax(1).tolist()


def test_classes_are_sorted_folder_names_and_labels_follow(tree: Path) -> None:
    assert imagenet_classes(tree) == CLASSES
    data = load_imagenet_folder(tree, resolution=16, train_images=5, val_images=4, seed=0)
    assert data.num_classes == 3 and data.channels == 3 and data.image_size == 16 and data.name == "imagenet-folder"
    for split, n in ((data.train, 5), (data.val, 4)):
        assert split.images.shape == (n, 3, 16, 16) and split.images.dtype == torch.uint8
        assert split.labels.dtype == torch.int64
        assert split.labels.tolist() == _labels_from_pixels(split.images)
        assert (split.mean, split.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert data.test is data.val
    x, y = next(batches(data.val, batch_size=3))
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32 and torch.equal(y, data.val.labels[:3])


def test_resize_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    thirds = np.zeros((30, 90, 3), dtype=np.uint8)  # red | green | blue, each 30×30
    thirds[:, :30, 0] = thirds[:, 30:60, 1] = thirds[:, 60:, 2] = 255
    noise = np.random.default_rng(0).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)  # portrait 30 wide, 40 high
    for split in ("train", "val"):
        (tmp_path / split / "n0").mkdir(parents=True)
        (tmp_path / split / "n1").mkdir(parents=True)
        Image.fromarray(thirds).save(tmp_path / split / "n0" / "thirds.png")
        Image.fromarray(noise).save(tmp_path / split / "n1" / "noise.jpg", quality=90)
    data = load_imagenet_folder(tmp_path, resolution=16, train_images=2, val_images=2, seed=0)
    by_label = dict(zip(data.val.labels.tolist(), data.val.images))

    # 90×30 at r=16: shorter side to ceil(16 / 0.875) = 19, so 57×19; crop x from round((57-16)/2) = 20: all green
    green = torch.zeros(3, 16, 16, dtype=torch.uint8)
    green[1] = 255
    assert torch.equal(by_label[0], green)

    # 30×40 at r=16: 19×int(19*40/30) = 19×25; crop left round(1.5) = 2, top round(4.5) = 4 (round half to even)
    with Image.open(tmp_path / "val" / "n1" / "noise.jpg") as img:
        expected = img.convert("RGB").resize((19, 25), Image.BILINEAR).crop((2, 4, 18, 20))
    assert torch.equal(by_label[1], torch.from_numpy(np.asarray(expected).transpose(2, 0, 1).copy()))
    assert torch.equal(data.train.images[data.train.labels == 1][0], by_label[1])  # train gets the same transform


def test_seeded_sample_is_reproducible_and_depends_on_seed(tree: Path) -> None:
    a = load_imagenet_folder(tree, resolution=12, train_images=5, val_images=3, seed=0)
    b = load_imagenet_folder(tree, resolution=12, train_images=5, val_images=3, seed=0)
    c = load_imagenet_folder(tree, resolution=12, train_images=5, val_images=3, seed=1)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.labels, b.val.labels)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.train.images, c.train.images)
    assert not torch.equal(a.val.images, c.val.images)
    d = load_imagenet_folder(tree, resolution=12, train_images=2, val_images=3, seed=0)
    assert torch.equal(d.val.images, a.val.images)  # the val draw does not depend on how many train images are drawn


def test_asking_for_more_than_available_gives_all(tree: Path) -> None:
    data = load_imagenet_folder(tree, resolution=12, train_images=1000, val_images=1000, seed=3)
    assert len(data.train) == 3 * TRAIN_PER_CLASS and len(data.val) == 3 * VAL_PER_CLASS
    assert torch.bincount(data.val.labels).tolist() == [VAL_PER_CLASS] * 3
    assert len({tuple(img.flatten().tolist()) for img in data.train.images}) == 3 * TRAIN_PER_CLASS  # no repeats


def test_imagenet_preprocess_for_model_cards() -> None:
    assert imagenet_preprocess(224) == {
        "resolution": 224,
        "channels": 3,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": "bilinear",
        "resize_shorter": 256,
        "center_crop": 224,
    }
    assert imagenet_preprocess(160)["resize_shorter"] == 183  # ceil(182.86)


def test_class_count_must_match_model_outputs(tree: Path) -> None:
    with pytest.raises(HwnasError, match=r"has 3 class folders in train/, but the model has 1000 outputs"):
        load_imagenet_folder(tree, resolution=12, train_images=2, val_images=2, num_classes=1000)
    assert load_imagenet_folder(tree, resolution=12, train_images=1, val_images=1, num_classes=3).num_classes == 3


def test_missing_val_folder(tree: Path) -> None:
    shutil.rmtree(tree / "val")
    with pytest.raises(HwnasError, match=r"has no val/ folder"):
        load_imagenet_folder(tree, resolution=12, train_images=2, val_images=2)


def test_val_class_folders_must_match_train(tree: Path) -> None:
    (tree / "val" / CLASSES[2]).rename(tree / "val" / "n09999999")
    with pytest.raises(HwnasError, match=r"only in train/: n01484850; only in val/: n09999999"):
        imagenet_classes(tree)


def test_flat_val_folder_is_explained(tree: Path) -> None:
    for folder in list((tree / "val").iterdir()):
        for file in folder.iterdir():
            file.rename(tree / "val" / file.name)
        folder.rmdir()
    with pytest.raises(HwnasError, match=r"holds images directly; sort them into val/<class>/ folders"):
        load_imagenet_folder(tree, resolution=12, train_images=2, val_images=2)


@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_corrupt_image_is_named(tree: Path, content: str) -> None:
    bad = tree / "val" / CLASSES[1] / "broken.jpg"
    if content == "garbage":
        bad.write_bytes(b"this is not a JPEG file")
    else:
        _image(1, 0, portrait=False).save(bad, quality=95)
        bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(HwnasError, match=r"cannot decode image .*broken\.jpg .*delete or replace the file"):
        load_imagenet_folder(tree, resolution=12, train_images=1, val_images=100)
