"""Supernet: extract parity, no hidden state, kernel transforms, importance reordering."""

from __future__ import annotations

import random

import pytest
import torch
from archs import MBV3_ARCHS, TINY_ARCHS
from torch import nn

from hwnas.blocks import build_model
from hwnas.errors import HwnasError
from hwnas.space import Arch, get_space, largest, sample
from hwnas.supernet import Supernet, extract, reorder_channels, transformed_kernel


def _perturbed(space_name: str, seed: int = 0) -> Supernet:
    """A supernet whose BN stats, affine params and kernel transforms are not at their init values."""
    torch.manual_seed(seed)
    net = Supernet(get_space(space_name))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for layer in net.elastic_layers():
            for matrix in layer.kernel_transforms.values():
                matrix.add_(0.05 * torch.randn_like(matrix))
    return net.eval()


@pytest.fixture(scope="module")
def tiny_net() -> Supernet:
    return _perturbed("mbv3-tiny")


def _sampled(n: int) -> list[str]:
    rng = random.Random(1)
    space = get_space("mbv3-tiny")
    return [str(sample(space, rng)) for _ in range(n)]


@pytest.mark.parametrize("arch_text", TINY_ARCHS + tuple(_sampled(4)))
def test_extract_matches_supernet_in_eval(tiny_net: Supernet, arch_text: str) -> None:
    arch = Arch.parse(arch_text)
    x = torch.randn(3, 1, arch.resolution, arch.resolution)
    static = extract(tiny_net, arch)
    with torch.no_grad():
        want = tiny_net(x, arch)
        got = static(x)
    assert got.shape == (3, 10)
    assert (got - want).abs().max().item() <= 1e-5


def test_extract_has_build_model_structure(tiny_net: Supernet) -> None:
    arch = Arch.parse(TINY_ARCHS[1])
    static = extract(tiny_net, arch)
    reference = build_model(tiny_net.space, arch)
    assert [type(m) for m in static] == [type(m) for m in reference]
    assert {k: v.shape for k, v in static.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


def test_extract_matches_on_mbv3_channels_last() -> None:
    net = _perturbed("mbv3", seed=1).to(memory_format=torch.channels_last)
    arch = Arch.parse(MBV3_ARCHS[1])
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert (extract(net, arch)(x) - net(x, arch)).abs().max().item() <= 1e-5


def test_forward_keeps_no_state_between_archs(tiny_net: Supernet) -> None:
    a, b = Arch.parse(TINY_ARCHS[0]), Arch.parse(TINY_ARCHS[2])
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        first = tiny_net(x, a)
        tiny_net(x, b)
        again = tiny_net(x, a)
    assert torch.equal(first, again)


def test_fresh_kernel_transform_is_centre_crop() -> None:
    net = Supernet(get_space("mbv3-tiny"))
    layer = net.elastic_layers()[0]
    k3 = transformed_kernel(layer, 3, 48)
    assert torch.allclose(k3, layer.dw_weight[:48, :, 2:5, 2:5])


def test_training_updates_kernel_transforms_and_only_used_slices() -> None:
    torch.manual_seed(0)
    net = Supernet(get_space("mbv3-tiny"))
    arch = Arch.parse(TINY_ARCHS[0])  # k3e3 everywhere
    net(torch.randn(4, 1, 28, 28), arch).sum().backward()
    layer = net.elastic_layers()[0]
    assert layer.kernel_transforms["5to3"].grad is not None and layer.kernel_transforms["5to3"].grad.abs().sum() > 0
    mid = layer.expand_weight.grad.abs().sum(dim=(1, 2, 3))
    used = 72  # make_divisible(24 * 3)
    assert mid[:used].sum() > 0 and mid[used:].sum() == 0
    unused_layer = net.stages[0][3]  # depth 2 in this arch: layers 3 and 4 are skipped
    assert unused_layer.dw_weight.grad is None


def test_reorder_channels_keeps_largest_subnet_function() -> None:
    net = _perturbed("mbv3-tiny", seed=2)
    arch = largest(net.space, resolution=28)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        before = net(x, arch)
        perms = [reorder_channels(layer) for layer in net.elastic_layers()]
        after = net(x, arch)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms)
    assert (before - after).abs().max().item() <= 1e-4
    layer = net.elastic_layers()[0]
    importance = layer.project_weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_arch_of_another_space_is_rejected(tiny_net: Supernet) -> None:
    with pytest.raises(HwnasError):
        extract(tiny_net, Arch.parse(MBV3_ARCHS[0]))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_cropped_depthwise_kernel_is_exact_in_value_and_gradient(size: int, kernel: int) -> None:
    """The supernet drops depthwise taps that can only see zero padding: same output, same gradients, zero for the
    dropped taps (which is what the full convolution gives them too)."""
    from hwnas.supernet.elastic import _effective_kernel

    gen = torch.Generator().manual_seed(size * 10 + kernel)
    x = torch.randn(2, 4, size, size, generator=gen)
    weight = torch.randn(4, 1, kernel, kernel, generator=gen)
    grads = []
    outs = []
    for crop in (False, True):
        xi, wi = x.clone().requires_grad_(), weight.clone().requires_grad_()
        used, padding = _effective_kernel(wi, xi.shape[-2:]) if crop else (wi, (kernel // 2, kernel // 2))
        out = torch.nn.functional.conv2d(xi, used, None, 1, padding, 1, 4)
        out.pow(2).sum().backward()
        outs.append(out)
        grads.append((xi.grad, wi.grad))
    assert outs[0].shape == outs[1].shape == x.shape
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4) and torch.allclose(grads[0][1], grads[1][1], atol=1e-4)
    cropped, _ = _effective_kernel(weight, x.shape[-2:])
    assert cropped.shape[-1] == min(kernel, 2 * size - 1)
