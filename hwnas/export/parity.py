"""Does the ONNX file compute what the torch model computes? Max abs logit difference and top-1 agreement on real images.

Run on real test images (not random noise): noise keeps logits near zero and hides differences that matter on data
the model is confident about. Also home of `onnx_logits` / `onnx_accuracy`, used for fp32 and int8 files alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.export.onnx import INPUT_NAME, ort_session

__all__ = ["ParityResult", "onnx_logits", "onnx_accuracy", "check_parity"]


@dataclass(frozen=True, slots=True)
class ParityResult:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # share of images where argmax(onnx) == argmax(torch), 0..1
    n_images: int


def _as_batch(images: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise HwnasError(
            f"expected a non-empty NCHW image batch, got shape {tuple(arr.shape)}; pass preprocessed images"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def onnx_logits(
    path: str | os.PathLike[str], images: torch.Tensor | np.ndarray, *, batch_size: int = 256, threads: int = 1
) -> np.ndarray:
    """Logits of the ONNX model at `path` for preprocessed NCHW float images, run in chunks of `batch_size`."""
    arr = _as_batch(images)
    session = ort_session(path, threads=threads)
    expected = session.get_inputs()[0].shape
    if len(expected) != 4 or any(isinstance(e, int) and e != a for e, a in zip(expected[1:], arr.shape[1:])):
        raise HwnasError(
            f"{path} expects input {expected}, got images of shape {tuple(arr.shape)}; check the resolution"
        )
    outs = [session.run(None, {INPUT_NAME: arr[i : i + batch_size]})[0] for i in range(0, len(arr), batch_size)]
    return np.concatenate(outs)


def onnx_accuracy(
    path: str | os.PathLike[str],
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 256,
    threads: int = 1,
) -> float:
    """Top-1 accuracy (0..1) of an ONNX classifier on preprocessed images."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    logits = onnx_logits(path, images, batch_size=batch_size, threads=threads)
    if len(y) != len(logits):
        raise HwnasError(f"{len(y)} labels for {len(logits)} images; pass one label per image")
    return float((logits.argmax(1) == y).mean())


def check_parity(
    model: nn.Module,
    path: str | os.PathLike[str],
    images: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 256,
    threads: int = 1,
) -> ParityResult:
    """Compare eval-mode torch logits with onnxruntime logits on the same images."""
    arr = _as_batch(images)
    model = model.eval()
    with torch.no_grad():
        ref = np.concatenate(
            [model(torch.from_numpy(arr[i : i + batch_size])).numpy() for i in range(0, len(arr), batch_size)]
        )
    got = onnx_logits(path, arr, batch_size=batch_size, threads=threads)
    diff = np.abs(ref - got)
    return ParityResult(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        top1_agreement=float((ref.argmax(1) == got.argmax(1)).mean()),
        n_images=len(arr),
    )
