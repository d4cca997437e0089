import random

import pytest
import torch
from archs import MBV3_ARCHS, TINY_ARCHS

from hwnas.blocks import arch_macs, build_model, count_macs
from hwnas.space import Arch, blocks_of, get_space, sample


@pytest.mark.parametrize("name,text", [("mbv3-tiny", t) for t in TINY_ARCHS] + [("mbv3", MBV3_ARCHS[0])])
def test_fixture_archs_forward(name, text):
    space = get_space(name)
    arch = Arch.parse(text)
    model = build_model(space, arch).eval()
    x = torch.randn(2, space.in_channels, arch.resolution, arch.resolution)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, space.num_classes)
    assert torch.isfinite(y).all()


def test_sampled_tiny_archs_build_and_run_at_their_resolution():
    space = get_space("mbv3-tiny")
    rng = random.Random(0)
    for _ in range(12):
        arch = sample(space, rng)
        model = build_model(space, arch).eval()
        specs = blocks_of(space, arch)
        x = torch.randn(1, space.in_channels, arch.resolution, arch.resolution)
        with torch.no_grad():
            for block, spec in zip(model, specs):
                assert x.shape[1:] == (spec.in_ch, spec.in_hw, spec.in_hw), spec.key
                x = block(x)
        assert x.shape == (1, space.num_classes)


def test_sampled_mbv3_arch_runs_at_its_resolution():
    space = get_space("mbv3")
    arch = sample(space, random.Random(5), resolution=128)
    with torch.no_grad():
        assert build_model(space, arch).eval()(torch.randn(1, 3, 128, 128)).shape == (1, 1000)


@pytest.mark.slow
def test_largest_mbv3_macs_match_fvcore_on_built_model():
    space = get_space("mbv3")
    arch = Arch.parse(MBV3_ARCHS[2])
    whole = count_macs(build_model(space, arch), (1, 3, 224, 224))
    assert arch_macs(space, arch) == whole
    assert 400e6 < whole < 700e6  # OFA's largest MobileNetV3 subnet is ~0.5 GMACs at 224


def test_tiny_macs_sum_of_blocks_equals_whole():
    space = get_space("mbv3-tiny")
    arch = Arch.parse(TINY_ARCHS[1])
    assert arch_macs(space, arch) == count_macs(build_model(space, arch), (1, 1, arch.resolution, arch.resolution))


def test_residual_only_when_shapes_match():
    space = get_space("mbv3")
    specs = blocks_of(space, Arch.parse(MBV3_ARCHS[1]))
    for spec in specs:
        if spec.op == "ir":
            assert spec.has_residual == (spec.stride == 1 and spec.in_ch == spec.out_ch)
