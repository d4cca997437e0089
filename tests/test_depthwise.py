"""Supernet depthwise convolution: the custom backward (flipped-kernel input gradient, C weight gradient) equals
autograd of F.conv2d for the shapes the supernet uses, channels_last and NCHW, stride 1 and 2."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from hwnas.supernet.depthwise import depthwise_conv, grad_weight_reference, native_grad_weight

CASES = [  # (batch, channels, size, kernel, stride)
    (4, 16, 16, 7, 1),
    (4, 24, 16, 7, 2),
    (3, 40, 8, 5, 1),
    (3, 40, 9, 5, 2),
    (2, 8, 4, 3, 1),
    (2, 12, 5, 3, 2),
    (1, 7, 6, 7, 1),
]


def _grads(fn, x, w, stride, padding):  # type: ignore[no-untyped-def]
    xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = fn(xi, wi, stride, padding)
    gen = torch.Generator().manual_seed(7)
    out.backward(torch.randn(out.shape, generator=gen).contiguous(memory_format=torch.channels_last))
    return out.detach(), xi.grad, wi.grad


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_custom_backward_equals_autograd_of_conv2d(case: tuple[int, ...], channels_last: bool) -> None:
    n, c, size, k, stride = case
    gen = torch.Generator().manual_seed(sum(case))
    x = torch.randn(n, c, size, size, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, 1, k, k, generator=gen)
    padding = (k // 2, k // 2)
    ref = _grads(lambda a, b, s, p: F.conv2d(a, b, None, s, p, 1, c), x, w, stride, padding)
    ours = _grads(lambda a, b, s, p: depthwise_conv(a, b, stride=s, padding=p), x, w, stride, padding)
    for r, o in zip(ref, ours):
        assert r.shape == o.shape
        assert torch.allclose(r, o, rtol=1e-4, atol=1e-4), float((r - o).abs().max())


def test_non_square_cropped_kernel() -> None:
    """The supernet crops taps that only see padding, per axis: a 7×5 kernel on a 4×2 map."""
    x = torch.randn(2, 6, 4, 2).contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 1, 7, 3)
    ref = _grads(lambda a, b, s, p: F.conv2d(a, b, None, s, p, 1, 6), x, w, 1, (3, 1))
    ours = _grads(lambda a, b, s, p: depthwise_conv(a, b, stride=s, padding=p), x, w, 1, (3, 1))
    for r, o in zip(ref, ours):
        assert torch.allclose(r, o, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_native_kernel_builds_and_matches_onednn() -> None:
    """With a C compiler present the C kernel must actually be in use (not silently falling back)."""
    x = torch.randn(8, 32, 10, 10).contiguous(memory_format=torch.channels_last)
    g = torch.randn(8, 32, 5, 5).contiguous(memory_format=torch.channels_last)
    w = torch.randn(32, 1, 7, 7)
    native = native_grad_weight(x, g, (7, 7), stride=2, padding=(3, 3))
    assert native is not None
    assert torch.allclose(native, grad_weight_reference(x, g, w, stride=2, padding=(3, 3)), rtol=1e-4, atol=1e-4)
    assert native_grad_weight(x.double(), g.double(), (7, 7), stride=2, padding=(3, 3)) is None  # falls back


def test_no_grad_is_plain_conv() -> None:
    x = torch.randn(1, 4, 5, 5)
    w = torch.randn(4, 1, 3, 3)
    with torch.no_grad():
        assert torch.equal(depthwise_conv(x, w, stride=1, padding=(1, 1)), F.conv2d(x, w, None, 1, 1, 1, 4))
