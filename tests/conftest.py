import os
import sys
from pathlib import Path

import pytest
import torch

from hwnas.data import Dataset, load_dataset

sys.path.insert(0, str(Path(__file__).parent))  # `import archs`
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

FASHION_MNIST = Path(os.environ.get("HWNAS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"Fashion-MNIST not found in {FASHION_MNIST}; run 'make setup' (installs dataset-fashion-mnist)")
    return FASHION_MNIST


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    """512 synthetic images with 64 held out: the training tests' dataset."""
    return load_dataset("synthetic", val_size=64, seed=0, synthetic_size=512)
