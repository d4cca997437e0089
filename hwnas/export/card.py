"""`model_card.json`: everything a deployer needs to know about an exported model, and the evidence behind it.

The ``preprocess`` block is the contract with the deployer: take a raw uint8 image (H, W) or (H, W, C), resize it to
``resolution`` with the ``resize`` method, scale to [0, 1] (``x / 255``), subtract ``mean`` and divide by ``std`` per
channel, lay it out as NCHW float32 and feed it as ``input``. `tools/classify_onnx.py` implements exactly this with
numpy only, and reproduces the card's ``test_acc`` without importing hwnas.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_write_json
from hwnas.digest import file_sha256
from hwnas.errors import HwnasError
from hwnas.machine import machine_info, package_versions
from hwnas.space import Arch, SpaceSpec, space_hash

__all__ = [
    "CARD_SCHEMA",
    "PREPROCESS_KEYS",
    "file_sha256",
    "make_preprocess",
    "build_model_card",
    "write_model_card",
    "load_model_card",
]

CARD_SCHEMA = "hwnas.model_card/1"
PREPROCESS_KEYS = ("resolution", "channels", "mean", "std", "resize")
_RESIZE_METHODS = ("none", "bilinear")


def make_preprocess(dataset_preprocess: Mapping[str, Any], *, resolution: int) -> dict[str, Any]:
    """The deployer's recipe for this model: the dataset's normalisation at the arch's input resolution.

    The dataset's native size may differ from the arch resolution (Fashion-MNIST is 28 px, an arch may take 36 px);
    then the image must be resized, and the card says how.
    """
    missing = [k for k in ("channels", "mean", "std") if k not in dataset_preprocess]
    if missing:
        raise HwnasError(f"dataset preprocess lacks {missing}; expected keys {list(PREPROCESS_KEYS)}")
    channels = int(dataset_preprocess["channels"])
    mean = [float(v) for v in _as_list(dataset_preprocess["mean"])]
    std = [float(v) for v in _as_list(dataset_preprocess["std"])]
    if len(mean) != channels or len(std) != channels or any(s <= 0 for s in std):
        raise HwnasError(
            f"dataset preprocess has {channels} channels but mean {mean} / std {std}; fix the dataset stats"
        )
    native = dataset_preprocess.get("resolution")
    method = str(dataset_preprocess.get("resize", "bilinear"))
    if native is not None and int(native) == resolution and method == "none":
        resize = "none"
    else:
        resize = method if method != "none" else "bilinear"
    if resize not in _RESIZE_METHODS:
        raise HwnasError(f"unsupported resize method {resize!r}; supported: {', '.join(_RESIZE_METHODS)}")
    recipe = {
        "resolution": resolution,
        "channels": channels,
        "mean": mean,
        "std": std,
        "resize": resize,
        "native_resolution": int(native) if native is not None else None,
        "scale": "divide uint8 pixels by 255 before subtracting mean",
        "layout": "NCHW float32",
        "recipe": "x = resize(img, resolution) / 255; x = (x - mean) / std; feed x[None] (N, C, H, W) as 'input'",
    }
    if "center_crop" in dataset_preprocess:  # ImageNet's eval transform: shorter side to r / 0.875, centre crop r
        import math

        from hwnas.data.imagenet import CROP_FRACTION

        shorter = int(math.ceil(resolution / CROP_FRACTION))
        recipe.update(
            resize_shorter=shorter,
            center_crop=resolution,
            native_resolution=None,
            recipe=f"resize the shorter side to {shorter} px ({resize}), centre-crop {resolution}x{resolution}; "
            "x = img / 255; x = (x - mean) / std; feed x[None] (N, C, H, W) as 'input'",
        )
    return recipe


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def build_model_card(
    *,
    space: SpaceSpec,
    arch: Arch,
    dataset: str,
    preprocess: Mapping[str, Any],
    accuracy: Mapping[str, Any],
    latency: Mapping[str, Any],
    cost: Mapping[str, int],
    files: Mapping[str, str | os.PathLike[str] | None],
    parity: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the card. File entries get their size and sha256 so a deployer can verify what they received."""
    file_info: dict[str, Any] = {}
    for role, path in files.items():
        if path is None:
            file_info[role] = None
            continue
        p = Path(path)
        file_info[role] = {"path": p.name, "bytes": p.stat().st_size, "sha256": file_sha256(p)}
    info = machine_info()
    return {
        "schema": CARD_SCHEMA,
        "arch": str(arch),
        "space": {
            "name": space.name,
            "hash": space_hash(space),
            "width": space.width,
            "in_channels": space.in_channels,
            "num_classes": space.num_classes,
        },
        "dataset": dataset,
        "input": {
            "name": "input",
            "shape": ["batch", space.in_channels, arch.resolution, arch.resolution],
            "dtype": "float32",
        },
        "output": {"name": "logits", "shape": ["batch", space.num_classes], "meaning": "unnormalised class scores"},
        "preprocess": dict(preprocess),
        "accuracy": dict(accuracy),
        "latency": dict(latency),
        "macs": int(cost["macs"]),
        "params": int(cost["params"]),
        "parity": dict(parity),
        "training": dict(training or {}),
        "files": file_info,
        "versions": package_versions(),
        "machine": {
            "cpu": info["cpu"],
            "cpu_signature": info["cpu_signature"],
            "cores": info["cores"],
            "platform": info["platform"],
        },
        "date": info["date"],
    }


def write_model_card(path: str | os.PathLike[str], card: Mapping[str, Any]) -> Path:
    return atomic_write_json(path, dict(card))


def load_model_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and sanity-check a model card (schema and the preprocess contract)."""
    p = Path(path)
    try:
        card = json.loads(p.read_text())
    except FileNotFoundError:
        raise HwnasError(f"model card {p} not found; run 'hwnas export' first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise HwnasError(f"cannot read model card {p}: {exc}; re-run 'hwnas export'") from None
    if not isinstance(card, dict) or card.get("schema") != CARD_SCHEMA:
        raise HwnasError(f"{p} is not an hwnas model card (schema {CARD_SCHEMA}); re-run 'hwnas export'")
    missing = [k for k in PREPROCESS_KEYS if k not in card.get("preprocess", {})]
    if missing:
        raise HwnasError(f"model card {p} lacks preprocess keys {missing}; re-run 'hwnas export'")
    return card
