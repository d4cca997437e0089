import random

import pytest
from archs import BAD_ARCH_STRINGS, MBV3_ARCHS, NON_CANONICAL, TINY_ARCHS

from hwnas.errors import HwnasError
from hwnas.space import (
    SPACE_NAMES,
    Arch,
    BlockSpec,
    blocks_of,
    check_arch,
    contains,
    crossover,
    distinct_blocks,
    get_space,
    largest,
    mutate,
    sample,
    smallest,
    space_hash,
    with_io,
)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_roundtrip_1000_samples(name):
    space = get_space(name)
    rng = random.Random(0)
    seen = set()
    for _ in range(1000):
        arch = sample(space, rng)
        text = str(arch)
        assert Arch.parse(text) == arch
        assert str(Arch.parse(text)) == text
        assert contains(space, arch)
        seen.add(text)
    assert len(seen) > 990  # the space is huge: samples are essentially all distinct


@pytest.mark.parametrize("text", MBV3_ARCHS + TINY_ARCHS)
def test_fixture_archs_parse(text):
    assert str(Arch.parse(text)) == text


@pytest.mark.parametrize("text", BAD_ARCH_STRINGS)
def test_invalid_strings_rejected(text):
    with pytest.raises(HwnasError) as info:
        Arch.parse(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text,canonical", NON_CANONICAL.items())
def test_non_canonical_rejected_with_canonical_form(text, canonical):
    with pytest.raises(HwnasError, match="not canonical") as info:
        Arch.parse(text)
    assert repr(canonical) in str(info.value)


def test_arch_not_in_space_names_the_reason():
    space = get_space("mbv3")
    with pytest.raises(HwnasError, match="kernel 9"):
        check_arch(space, Arch.parse("r224/k9e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3"))
    with pytest.raises(HwnasError, match="depth 1"):
        check_arch(space, Arch.parse("r224/k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3"))
    with pytest.raises(HwnasError, match="stages"):
        check_arch(space, Arch.parse("r224/k3e3,k3e3"))


def test_extremes_are_what_the_space_says():
    space = get_space("mbv3")
    big, small = largest(space), smallest(space)
    assert big.resolution == 224 and small.resolution == 128
    assert big.depths == (4,) * 5 and small.depths == (2,) * 5
    assert all(layer.kernel == 7 and layer.expand == 6 for layer in big.layers)
    assert all(layer.kernel == 3 and layer.expand == 3 for layer in small.layers)
    assert str(big) == MBV3_ARCHS[2] and str(small) == MBV3_ARCHS[0]


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_mutate_and_crossover_stay_in_space(name):
    space = get_space(name)
    rng = random.Random(1)
    a, b = sample(space, rng), sample(space, rng)
    for _ in range(200):
        child = crossover(space, a, b, rng)
        assert contains(space, child)
        mutant = mutate(space, child, rng, prob=0.3)
        assert contains(space, mutant)
        a, b = mutant, child
    assert mutate(space, a, rng, prob=0.0) == a


def test_sampling_is_deterministic_per_seed():
    space = get_space("mbv3")
    assert sample(space, random.Random(7)) == sample(space, random.Random(7))


def test_distinct_blocks_counts_and_covers_samples():
    space = get_space("mbv3")
    per_res = distinct_blocks(space)
    assert set(per_res) == set(space.resolutions)
    assert all(len(specs) == 93 for specs in per_res.values())  # 5 stages x 2 positions x 9 choices + stem/first/head
    rng = random.Random(3)
    for _ in range(50):
        arch = sample(space, rng)
        keys = {b.key for b in per_res[arch.resolution]}
        assert all(b.key in keys for b in blocks_of(space, arch))


def test_block_keys_roundtrip():
    space = get_space("mbv3")
    for specs in distinct_blocks(space).values():
        for spec in specs:
            assert BlockSpec.parse_key(spec.key) == spec
    with pytest.raises(HwnasError):
        BlockSpec.parse_key("56x56x24:ir_k5_e6_c40_s3_hs")
    with pytest.raises(HwnasError, match="bad LUT key"):
        BlockSpec.parse_key("056x56x24:ir_k5_e6_c40_s2_hs")


def test_space_hash_changes_with_io():
    space = get_space("mbv3-tiny")
    assert space_hash(space) == space_hash(get_space("mbv3-tiny"))
    assert space_hash(with_io(space, in_channels=3, num_classes=10)) != space_hash(space)
    assert space_hash(get_space("mbv3-tiny", width=0.5)) != space_hash(space)


def test_unknown_space():
    with pytest.raises(HwnasError, match="available spaces"):
        get_space("resnet")
