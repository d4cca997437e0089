#!/usr/bin/env python3
"""Classify the Fashion-MNIST test set with an exported hwnas model, using only onnxruntime + numpy (no hwnas, no torch).

Proves the exported file and its model card are enough to deploy: the preprocessing is read from model_card.json
("preprocess": resolution, channels, mean, std, resize) and implemented here from scratch.

    python tools/classify_onnx.py runs/quickstart/export/model_card.json \
        [--model model.int8.onnx] [--data /usr/share/datasets/fashion-mnist] [--limit N]

Prints the accuracy; exits 1 if it differs from the card's test accuracy by more than --tolerance.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def read_idx(path: Path) -> np.ndarray:
    """IDX format (LeCun): big-endian magic (0, 0, dtype 0x08 = uint8, ndim), ndim uint32 sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _linear_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear resampling with half-pixel centres (align_corners=False, no antialias)."""
    scale = in_size / out_size
    src = (np.arange(out_size) + 0.5) * scale - 0.5
    src = np.clip(src, 0.0, None)
    i0 = np.minimum(np.floor(src).astype(int), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = (src - i0).astype(np.float32)
    return i0, i1, frac


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) float32 → (N, C, size, size)."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    y0, y1, fy = _linear_weights(h, size)
    x0, x1, fx = _linear_weights(w, size)
    rows = images[..., y0, :] * (1 - fy)[:, None] + images[..., y1, :] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def preprocess(raw: np.ndarray, spec: dict) -> np.ndarray:
    """Raw uint8 images (N, H, W) or (N, H, W, C) → the model input described by the card."""
    x = raw.astype(np.float32)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    channels = int(spec["channels"])
    if x.shape[1] != channels:
        if x.shape[1] == 1:
            x = np.repeat(x, channels, axis=1)
        else:
            raise ValueError(f"images have {x.shape[1]} channels, the model wants {channels}")
    method = spec["resize"]
    if method == "bilinear":
        x = resize_bilinear(x, int(spec["resolution"]))
    elif method != "none":
        raise ValueError(f"unknown resize method {method!r}")
    if x.shape[-1] != int(spec["resolution"]):
        raise ValueError(f"images are {x.shape[-1]} px, the model wants {spec['resolution']} and resize is 'none'")
    x = x / 255.0
    mean = np.asarray(spec["mean"], dtype=np.float32)[None, :, None, None]
    std = np.asarray(spec["std"], dtype=np.float32)[None, :, None, None]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("card", type=Path, help="model_card.json written by 'hwnas export'")
    parser.add_argument("--model", type=Path, default=None, help="ONNX file (default: the card's fp32 model)")
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="classify only the first N test images (default: as many as the card's accuracy used)",
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--tolerance", type=float, default=0.001, help="allowed |accuracy - card accuracy| (fraction)")
    args = parser.parse_args()

    card = json.loads(args.card.read_text())
    model_path = args.model or args.card.parent / card["files"]["onnx"]["path"]
    is_int8 = card["files"].get("int8") is not None and Path(model_path).name == card["files"]["int8"]["path"]
    expected = card["accuracy"]["int8_test_acc" if is_int8 else "onnx_test_acc"]

    images = read_idx(args.data / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(args.data / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    # The card's accuracy is on the first n_images test images (the whole split unless exported with --test-images).
    n_card = int(card["accuracy"].get("n_images") or len(labels))
    limit = args.limit or n_card
    images, labels = images[:limit], labels[:limit]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    correct = 0
    for i in range(0, len(images), args.batch_size):
        x = preprocess(images[i : i + args.batch_size], card["preprocess"])
        logits = session.run(None, {input_name: x})[0]
        correct += int((logits.argmax(1) == labels[i : i + args.batch_size]).sum())
    acc = correct / len(labels)
    print(
        f"{Path(model_path).name}: {correct}/{len(labels)} correct, accuracy {acc:.4f} "
        f"(model card: {expected:.4f}, arch {card['arch']})"
    )
    if limit == n_card and abs(acc - expected) > args.tolerance:
        print(f"MISMATCH: accuracy differs from the model card by {abs(acc - expected):.4f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
