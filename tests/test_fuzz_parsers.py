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


_LUT_DIR = __import__("pathlib").Path(__file__).parent / "data"


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_lut_loader_total(tmp_path_factory, data):
    """Corrupted tables (edited cells, cut lines, junk bytes, broken metadata) load cleanly or raise HwnasError."""
    from hwnas.latency import load_lut

    csv_text = (_LUT_DIR / "lut3.csv").read_text()
    meta_text = (_LUT_DIR / "lut3.meta.json").read_text()
    kind = data.draw(st.sampled_from(["cell", "cut", "junk", "meta"]))
    if kind == "cell":
        lines = csv_text.splitlines()
        row = data.draw(st.integers(0, len(lines) - 1))
        cells = lines[row].split(",")
        col = data.draw(st.integers(0, len(cells) - 1))
        cells[col] = data.draw(
            st.sampled_from(["", "nan", "-1", "0", "inf", "1e309", "abc", "8x8x1:ir", '"', "1,2"]) | st.text(max_size=8)
        )
        lines[row] = ",".join(cells)
        csv_text = "\n".join(lines) + "\n"
    elif kind == "cut":
        csv_text = csv_text[: data.draw(st.integers(0, len(csv_text)))]
    elif kind == "junk":
        pos = data.draw(st.integers(0, len(csv_text)))
        csv_text = csv_text[:pos] + data.draw(st.text(max_size=20)) + csv_text[pos:]
    else:
        meta_text = (
            meta_text[: data.draw(st.integers(0, len(meta_text)))]
            if data.draw(st.booleans())
            else meta_text.replace(
                '"schema": 1', data.draw(st.sampled_from(['"schema": 2', '"schema": null', '"x": 1']))
            )
        )
    folder = tmp_path_factory.mktemp("lut")
    (folder / "t.csv").write_text(csv_text)
    (folder / "t.meta.json").write_text(meta_text)
    try:
        table = load_lut(folder / "t.csv")
    except HwnasError as exc:
        assert "\n" not in str(exc)
        return
    assert len(table.rows) >= 1
