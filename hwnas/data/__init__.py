"""Datasets held as uint8 tensors, and batch-level augmentation / normalisation / resizing."""

from hwnas.data.batches import AUGMENTS, augment_uint8, batches, epoch_order, make_batch, normalize, resize
from hwnas.data.datasets import DATASET_NAMES, DEFAULT_DIRS, Dataset, Split, load_dataset
from hwnas.data.imagenet import (
    CROP_FRACTION,
    IMAGENET_DATASET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_classes,
    imagenet_preprocess,
    load_imagenet_folder,
)
from hwnas.data.run_data import load_run_dataset

__all__ = [
    "AUGMENTS",
    "augment_uint8",
    "batches",
    "epoch_order",
    "make_batch",
    "normalize",
    "resize",
    "DATASET_NAMES",
    "DEFAULT_DIRS",
    "Dataset",
    "Split",
    "load_dataset",
    "load_run_dataset",
    "CROP_FRACTION",
    "IMAGENET_DATASET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "imagenet_classes",
    "imagenet_preprocess",
    "load_imagenet_folder",
]
