"""Property tests: any input to a parser either parses to a valid, canonical value or raises HwnasError — nothing else."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.errors import HwnasError
from hwnas.space import Arch, BlockSpec, contains, get_space, sample

_ARCH_ALPHABET = "rke0123456789/,x: _-"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ARCH_ALPHABET, max_size=60) | st.text(max_size=40))
def test_arch_parse_total(text):
    try:
        arch = Arch.parse(text)
    except HwnasError as exc:
        assert "\n" not in str(exc)
        return
    assert str(arch) == text and Arch.parse(str(arch)) == arch


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from(["mbv3", "mbv3-tiny"]), st.data())
def test_arch_string_mutations(seed, name, data):
    """Single-character edits of a valid arch string: valid in-space, valid out-of-space, or HwnasError."""
    space = get_space(name)
    text = str(sample(space, random.Random(seed)))
    pos = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    char = data.draw(st.sampled_from(_ARCH_ALPHABET))
    edited = text[:pos] + char + text[pos + 1 :]
    try:
        arch = Arch.parse(edited)
    except HwnasError:
        return
    assert isinstance(contains(space, arch), bool)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789xirconvhead_kecfs:", max_size=50))
def test_block_key_parse_total(text):
    try:
        spec = BlockSpec.parse_key(text)
    except HwnasError:
        return
    assert spec.key == text
