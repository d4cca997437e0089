"""Does the ONNX file compute what the torch model computes? Max abs logit difference and top-1 agreement on real images.

Run on real test images (not random noise): noise keeps logits near zero and hides differences that matter on data
the model is confident about. Also home of `onnx_logits` / `onnx_accuracy`, used for fp32 and int8 files alike, and of
`torch_logits`, the torch side of every check: float32 on whichever device holds the model (`hwnas export --device`),
with TF32 off on CUDA so a GPU reference is compared fp32 to fp32 (TF32 matmuls and convolutions round inputs to 10
mantissa bits, about 1e-3 relative: far above the 1e-4 parity limit).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.export.onnx import INPUT_NAME, ort_session

log = logging.getLogger(__name__)

__all__ = [
    "ParityResult",
    "onnx_logits",
    "onnx_accuracy",
    "check_parity",
    "require_parity",
    "torch_logits",
    "full_fp32",
]


@dataclass(frozen=True, slots=True)
class ParityResult:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # share of images where argmax(onnx) == argmax(torch), 0..1
    n_images: int


def require_parity(parity: ParityResult, *, what: str, arch: object, limit: float) -> None:
    """Log a parity check of the `what` file ("ONNX", ".pte") and raise HwnasError unless every logit is within
    `limit` of torch's and every top-1 prediction agrees (a failure is an exporter bug, never the user's input)."""
    log.info(
        "%s parity on %d images: max |diff| %.2e, top-1 agreement %.2f%%",
        what,
        parity.n_images,
        parity.max_abs_diff,
        100 * parity.top1_agreement,
    )
    if parity.max_abs_diff > limit or parity.top1_agreement < 1.0:
        raise HwnasError(
            f"{what} parity failed for {arch}: max |diff| {parity.max_abs_diff:.2e} (limit "
            f"{limit:.0e}), top-1 agreement {parity.top1_agreement:.4f}; report this as a bug"
        )


def _as_batch(images: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise HwnasError(
            f"expected a non-empty NCHW image batch, got shape {tuple(arr.shape)}; pass preprocessed images"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off for CUDA matmuls and cuDNN convolutions inside the block (restored after); a no-op on the CPU."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def torch_logits(model: nn.Module, images: torch.Tensor | np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Eval-mode float32 logits of `model` for preprocessed NCHW images, computed on the model's own device (TF32 off),
    returned on the CPU as numpy."""
    arr = _as_batch(images)
    device = next(model.parameters()).device
    model = model.eval()
    with torch.no_grad(), full_fp32():
        return np.concatenate(
            [
                model(torch.from_numpy(arr[i : i + batch_size]).to(device)).float().cpu().numpy()
                for i in range(0, len(arr), batch_size)
            ]
        )


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
    """Compare eval-mode torch logits (float32, on the model's device: `torch_logits`) with onnxruntime logits on the
    same images."""
    arr = _as_batch(images)
    ref = torch_logits(model, arr, batch_size=batch_size)
    got = onnx_logits(path, arr, batch_size=batch_size, threads=threads)
    diff = np.abs(ref - got)
    return ParityResult(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        top1_agreement=float((ref.argmax(1) == got.argmax(1)).mean()),
        n_images=len(arr),
    )
