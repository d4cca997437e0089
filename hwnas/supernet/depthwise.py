"""Depthwise convolution for supernet training, with a faster backward pass on CPU.

The forward pass is `F.conv2d` (oneDNN). The backward pass is where oneDNN loses time on mobile-network shapes: its
depthwise backward-weights for 5×5/7×7 kernels on small feature maps runs many times slower than its forward pass, and
it is the largest single cost of a BigNAS sandwich step (per-shape timings: bench/results/depthwise.json). So:

- input gradient, stride 1: a forward depthwise convolution of the output gradient with the flipped kernel (the same
  numbers, computed by oneDNN's fast forward kernel); stride 2: oneDNN's own backward-data;
- weight gradient (5×5, 7×7, and 3×3 on maps under 8×8): `dw_grad.c`, a small C loop over NHWC memory (each thread
  keeps a k×k×C accumulator in L1), compiled once per machine with the system C compiler into a cache folder and
  loaded with ctypes. Without a compiler, or for
  tensors it does not handle (not float32 channels_last on CPU), oneDNN's backward-weights is used instead — the
  results are the same up to float rounding either way (tested). `HWNAS_DEPTHWISE_BACKWARD=onednn` forces the
  oneDNN path (for A/B timing: `bench/bench_depthwise.py`).

The static blocks that are profiled and exported keep `nn.Conv2d`; this is only how the supernet trains.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["depthwise_conv", "native_grad_weight", "grad_weight_reference"]

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("dw_grad.c")
_CONV_BACKWARD = torch.ops.aten.convolution_backward


@lru_cache(maxsize=1)
def _library() -> Any:
    """The compiled weight-gradient kernel, or None when it cannot be built here (then oneDNN is used)."""
    if os.environ.get("HWNAS_DEPTHWISE_BACKWARD", "native").lower() == "onednn":
        return None
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not _SOURCE.is_file():
        log.info("no C compiler found: depthwise weight gradients use oneDNN")
        return None
    source = _SOURCE.read_bytes()
    # -march=native code is only valid on this kind of CPU: its name and signature (family, model, instruction sets:
    # one name can stand for hosts with and without AVX-512 under a hypervisor) are part of the cache key
    from hwnas.cache import cache_root
    from hwnas.machine import cpu_model, cpu_signature

    cpu = f"{cpu_model()}|{cpu_signature()}|{platform.machine()}"
    key = hashlib.sha256(source + cpu.encode()).hexdigest()[:16]
    target = cache_root() / "native" / f"dw_grad-{key}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
        os.close(fd)
        cmd = [compiler, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-o", tmp, str(_SOURCE)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)
            os.replace(
                tmp, target
            )  # atomic: concurrent ranks each build, the last rename wins, readers see a whole file
        except (OSError, subprocess.SubprocessError) as exc:
            Path(tmp).unlink(missing_ok=True)
            log.info("building %s failed (%s): depthwise weight gradients use oneDNN", _SOURCE.name, exc)
            return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        log.info("loading %s failed (%s): depthwise weight gradients use oneDNN", target, exc)
        return None
    fn = lib.hwnas_dw_grad_weight_nhwc
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 12
    return fn


def native_grad_weight(
    x: torch.Tensor, grad_out: torch.Tensor, kernel: tuple[int, int], *, stride: int, padding: tuple[int, int]
) -> torch.Tensor | None:
    """Depthwise weight gradient (C×1×kh×kw) from the C kernel, or None if it does not apply to these tensors."""
    fn = _library()
    if fn is None or x.device.type != "cpu" or x.dtype != torch.float32 or grad_out.dtype != torch.float32:
        return None
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()  # a view (no copy) when x is channels_last
    g_nhwc = grad_out.permute(0, 2, 3, 1).contiguous()
    n, h, w, c = x_nhwc.shape
    out = torch.empty(kernel[0], kernel[1], c, dtype=torch.float32)
    code = fn(
        x_nhwc.data_ptr(),
        g_nhwc.data_ptr(),
        out.data_ptr(),
        n,
        h,
        w,
        c,
        g_nhwc.shape[1],
        g_nhwc.shape[2],
        kernel[0],
        kernel[1],
        stride,
        padding[0],
        padding[1],
        torch.get_num_threads(),
    )
    if code != 0:
        return None
    return out.permute(2, 0, 1).unsqueeze(1)


def grad_weight_reference(
    x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, *, stride: int, padding: tuple[int, int]
) -> torch.Tensor:
    """oneDNN's depthwise weight gradient (what autograd of `F.conv2d` computes)."""
    c = x.shape[1]
    return _CONV_BACKWARD(
        grad_out, x, weight, None, [stride, stride], list(padding), [1, 1], False, [0, 0], c, [False, True, False]
    )[1]


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        c = x.shape[1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            same = stride == 1 and all(2 * p + 1 == k for p, k in zip(padding, weight.shape[-2:]))
            if same:
                grad_x = F.conv2d(grad_out, weight.flip(2, 3), None, 1, padding, 1, c)
            else:
                grad_x = _CONV_BACKWARD(
                    grad_out,
                    x,
                    weight,
                    None,
                    [stride, stride],
                    list(padding),
                    [1, 1],
                    False,
                    [0, 0],
                    c,
                    [True, False, False],
                )[0]
        if ctx.needs_input_grad[1]:
            kernel = tuple(weight.shape[-2:])
            # oneDNN's own 3×3 kernel is as fast or faster on maps of 8×8 and up (bench/bench_depthwise.py)
            onednn_is_fine = kernel == (3, 3) and min(grad_out.shape[-2:]) >= 8
            grad_w = None if onednn_is_fine else native_grad_weight(x, grad_out, kernel, stride=stride, padding=padding)
            if grad_w is None:
                grad_w = grad_weight_reference(x, grad_out, weight, stride=stride, padding=padding)
        return grad_x, grad_w, None, None


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, *, stride: int, padding: tuple[int, int]) -> torch.Tensor:
    """`F.conv2d(x, weight, stride=stride, padding=padding, groups=C)` with the faster backward described above.

    Under autocast (`hwnas train --amp`) it is plain `F.conv2d`: its autograd runs the backward in the precision the
    forward used and hands the float32 weight a float32 gradient; the custom backward is a float32 CPU kernel."""
    if (
        not torch.is_grad_enabled()
        or not (x.requires_grad or weight.requires_grad)
        or sys.platform == "win32"
        or torch.is_autocast_enabled(x.device.type)
    ):
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])
    return _DepthwiseConv.apply(x, weight, stride, padding)  # type: ignore[no-any-return]
