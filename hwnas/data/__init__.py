"""Datasets held as uint8 tensors, and batch-level augmentation / normalisation / resizing."""

from hwnas.data.batches import AUGMENTS, augment_uint8, batches, epoch_order, make_batch, normalize, resize
from hwnas.data.datasets import DATASET_NAMES, DEFAULT_DIRS, Dataset, Split, load_dataset

__all__ = [
    "AUGMENTS", "augment_uint8", "batches", "epoch_order", "make_batch", "normalize", "resize",
    "DATASET_NAMES", "DEFAULT_DIRS", "Dataset", "Split", "load_dataset",
]
