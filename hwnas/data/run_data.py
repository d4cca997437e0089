"""The data a run was trained (or is evaluated) on, by the dataset name its config records."""

from __future__ import annotations

from pathlib import Path

from hwnas.data.datasets import Dataset, load_dataset
from hwnas.errors import HwnasError

__all__ = ["load_run_dataset"]


def load_run_dataset(
    name: str,
    data_dir: Path | None,
    *,
    val_size: int,
    seed: int,
    resolution: int,
    num_classes: int,
    train_images: int,
    val_images: int,
    progress: bool = False,
) -> Dataset:
    """The run's dataset with its own train/val split (same `val_size` and `seed`: no leakage into training data).

    Small datasets load whole. An ImageNet-style folder (`imagenet-folder`, imported supernets) is far too large for
    that: `train_images` training images (BN recalibration, fine-tuning) and `val_images` validation images are decoded
    at `resolution`, and `data_dir` is required because such runs record no data folder.
    """
    from hwnas.data.imagenet import IMAGENET_DATASET, load_imagenet_folder

    if name == IMAGENET_DATASET:
        if data_dir is None:
            raise HwnasError(
                "this run's data is an ImageNet-style folder that the run does not record: pass --data-dir DIR "
                "holding train/<class>/ and val/<class>/"
            )
        return load_imagenet_folder(
            data_dir,
            resolution=resolution,
            train_images=train_images,
            val_images=val_images,
            seed=seed,
            num_classes=num_classes,
            progress=progress,
        )
    data = load_dataset(name, data_dir, val_size=val_size, seed=seed)
    if data.num_classes > num_classes:
        raise HwnasError(
            f"dataset {name} has {data.num_classes} classes, the run's model {num_classes} outputs; "
            "pass the run's own dataset"
        )
    return data
