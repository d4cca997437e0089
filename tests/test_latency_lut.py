"""LUT files and the predictor: round trip, validation errors, hand-made 3-row table, vectorized == scalar."""

import dataclasses
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from archs import TINY_ARCHS

from hwnas.errors import HwnasError
from hwnas.latency import (
    LatencyPredictor,
    LatencyTable,
    TimingStats,
    choice_latency_ms,
    latency_range_ms,
    load_lut,
    predict_ms,
    raw_sum_ms,
    save_lut,
)
from hwnas.latency.lut import space_meta
from hwnas.space import Arch, SpaceSpec, StageSpec, blocks_of, distinct_blocks, get_space, largest, sample, smallest

DATA = Path(__file__).parent / "data"
LUT3_SPACE = SpaceSpec(
    name="lut3",
    in_channels=1,
    num_classes=2,
    resolutions=(8,),
    stem_ch=8,
    stem_stride=1,
    first_ch=8,
    stages=(StageSpec(8, 1, "re", False, (1, 2), (3,), (1,)),),
    head_expand=1,
    head_feat_ch=8,
)


def tiny_table(space=None, *, calibration=None) -> LatencyTable:
    """A full mbv3-tiny table with synthetic (but distinct, positive) latencies: p50 grows with MACs-like size."""
    space = space or get_space("mbv3-tiny")
    rng = random.Random(3)
    rows = {}
    for specs in distinct_blocks(space).values():
        for s in specs:
            ms = 1e-4 * s.in_hw * s.in_hw * s.mid_ch * s.kernel / 50 + rng.uniform(0.001, 0.01)
            rows[s.key] = TimingStats(ms, ms * 1.1, 0.01, 50)
    meta = {
        "device": "fake",
        "space": space_meta(space),
        "resolutions": list(space.resolutions),
        "profile": {"name": "fake"},
        "calibration": calibration,
    }
    return LatencyTable(rows, meta)


def test_hand_made_three_row_table_predicts_sum_of_rows_plus_calibration():
    table = load_lut(DATA / "lut3.csv", space=LUT3_SPACE)
    assert len(table) == 3
    # r8 with depth 2: stem + first block + 2 layers (the same signature as the first block) + head
    arch = Arch.parse("r8/k3e1,k3e1")
    raw = 0.125 + 0.5 + 0.5 + 0.5 + 0.25
    assert raw_sum_ms(table, LUT3_SPACE, arch) == pytest.approx(raw, abs=1e-12)
    assert predict_ms(table, LUT3_SPACE, arch) == pytest.approx(1.1 * raw + 0.2, abs=1e-12)
    shallow = Arch.parse("r8/k3e1")
    assert LatencyPredictor(table, LUT3_SPACE).predict(shallow) == pytest.approx(1.1 * (raw - 0.5) + 0.2, abs=1e-12)
    lo, hi = latency_range_ms(LatencyPredictor(table, LUT3_SPACE))
    assert (lo, hi) == pytest.approx((1.1 * (raw - 0.5) + 0.2, 1.1 * raw + 0.2))


def test_round_trip_keeps_rows_and_meta(tmp_path):
    table = tiny_table(
        calibration={"slope": 1.2, "offset_ms": 0.01, "per_resolution": {"32": {"slope": 1.3, "offset_ms": 0.0}}}
    )
    path = save_lut(table, tmp_path / "fake" / "mbv3-tiny.csv")
    assert (tmp_path / "fake" / "mbv3-tiny.meta.json").is_file()
    loaded = load_lut(path, space=get_space("mbv3-tiny"))
    assert loaded.rows.keys() == table.rows.keys()
    for key, stats in table.rows.items():
        assert loaded.rows[key].p50_ms == pytest.approx(stats.p50_ms, abs=1e-6)
        assert loaded.rows[key].n == stats.n
    assert loaded.meta["calibration"] == table.meta["calibration"]
    assert loaded.space() == get_space("mbv3-tiny")
    arch = Arch.parse(TINY_ARCHS[2])  # r32: uses the per-resolution line
    assert predict_ms(loaded, get_space("mbv3-tiny"), arch) == pytest.approx(
        1.3 * raw_sum_ms(loaded, get_space("mbv3-tiny"), arch), rel=1e-9
    )


def test_missing_key_names_the_key_and_the_fix(tmp_path):
    table = tiny_table()
    space = get_space("mbv3-tiny")
    arch = Arch.parse(TINY_ARCHS[2])
    victim = next(s.key for s in distinct_blocks(space)[32] if "k7_e6" in s.key and s.in_hw == 16)
    del table.rows[victim]
    path = save_lut(table, tmp_path / "fake" / "mbv3-tiny.csv")
    loaded = load_lut(path)
    with pytest.raises(HwnasError, match=r"LUT miss '.*k7_e6.*'.*hwnas profile --device fake --space mbv3-tiny"):
        LatencyPredictor(loaded, space).predict_many([Arch.parse(TINY_ARCHS[0]), arch])
    with pytest.raises(HwnasError, match="hwnas profile"):
        latency_range_ms(LatencyPredictor(loaded, space))
    with pytest.raises(HwnasError, match="LUT miss"):
        choice_latency_ms(loaded, space, 32)
    assert LatencyPredictor(loaded, space).predict(Arch.parse(TINY_ARCHS[0])) > 0  # r24 rows are all there


def _corrupt(tmp_path, edit):
    path = save_lut(tiny_table(), tmp_path / "fake" / "mbv3-tiny.csv")
    edit(path)
    with pytest.raises(HwnasError) as info:
        load_lut(path, space=get_space("mbv3-tiny"))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_bad_files_are_one_line_errors(tmp_path):
    def replace_first_value(new):
        def edit(path):
            lines = path.read_text().splitlines()
            key, *rest = lines[1].split(",")
            rest[0] = new
            lines[1] = ",".join([key, *rest])
            path.write_text("\n".join(lines) + "\n")

        return edit

    assert "NaN" in _corrupt(tmp_path / "a", replace_first_value("nan"))
    assert "negative" in _corrupt(tmp_path / "b", replace_first_value("-0.5"))
    assert "truncated" in _corrupt(tmp_path / "c", lambda p: p.write_text("\n".join(p.read_text().splitlines()[:40])))
    assert "columns" in _corrupt(tmp_path / "d", lambda p: p.write_text(p.read_text().replace("ms_p50", "ms", 1)))
    assert "missing" in _corrupt(tmp_path / "e", lambda p: p.with_name("mbv3-tiny.meta.json").unlink())
    assert "truncated" in _corrupt(tmp_path / "f", lambda p: p.with_name("mbv3-tiny.meta.json").write_text('{"sche'))


def test_table_for_another_space_is_rejected(tmp_path):
    path = save_lut(tiny_table(), tmp_path / "fake" / "mbv3-tiny.csv")
    from hwnas.space import with_io

    rgb = with_io(get_space("mbv3-tiny"), in_channels=3, num_classes=10)  # CIFAR: other stem, other hash
    with pytest.raises(HwnasError, match="built for space 'mbv3-tiny'.*3 input channels"):
        load_lut(path, space=rgb)
    with pytest.raises(HwnasError, match="hash"):
        LatencyPredictor(load_lut(path), get_space("mbv3"))
    meta = json.loads(path.with_name("mbv3-tiny.meta.json").read_text())
    meta["space"]["hash"] = "000000000000"
    path.with_name("mbv3-tiny.meta.json").write_text(json.dumps(meta))
    with pytest.raises(HwnasError, match="different version"):
        load_lut(path).space()


def test_predict_many_equals_predict_and_raw_sum_calibration():
    space = get_space("mbv3-tiny")
    table = tiny_table(
        calibration={"slope": 1.15, "offset_ms": 0.02, "per_resolution": {"28": {"slope": 1.2, "offset_ms": 0.05}}}
    )
    predictor = LatencyPredictor(table, space)
    rng = random.Random(0)
    archs = [sample(space, rng) for _ in range(100)] + [Arch.parse(t) for t in TINY_ARCHS]
    many = predictor.predict_many(archs)
    assert many.shape == (len(archs),) and many.dtype == np.float64
    for arch, value in zip(archs, many):
        slope, offset = (1.2, 0.05) if arch.resolution == 28 else (1.15, 0.02)
        expected = slope * raw_sum_ms(table, space, arch) + offset
        assert predictor.predict(arch) == pytest.approx(expected, rel=1e-12)
        assert value == pytest.approx(expected, rel=1e-12)
    codes = predictor.encode(archs)
    assert codes.shape == (len(archs), 1 + 5 * 4) and np.array_equal(predictor.predict_codes(codes), many)
    predictor.predict_many(archs[:100])
    start = time.perf_counter()
    predictor.predict_many(archs[:100])
    assert time.perf_counter() - start < 0.05  # ~1 ms on a loaded 2-core box; generous bound for CI


def test_choice_latency_arrays_reproduce_predictions():
    space = get_space("mbv3-tiny")
    table = tiny_table(calibration={"slope": 1.1, "offset_ms": 0.03, "per_resolution": {}})
    predictor = LatencyPredictor(table, space)
    from hwnas.space import layer_choices

    for text in TINY_ARCHS:
        arch = Arch.parse(text)
        stage_ms, fixed_ms = choice_latency_ms(table, space, arch.resolution)
        assert [a.shape for a in stage_ms] == [(4, 9)] * 5
        total = fixed_ms + sum(
            stage_ms[s][p, layer_choices(space.stages[s]).index(layer)]
            for s, layers in enumerate(arch.stages)
            for p, layer in enumerate(layers)
        )
        assert total == pytest.approx(predictor.predict(arch), rel=1e-12)


def test_latency_range_brackets_every_arch():
    space = get_space("mbv3-tiny")
    predictor = LatencyPredictor(tiny_table(), space)
    lo, hi = latency_range_ms(predictor)
    eps = 1e-9  # the range and the predictions sum the same rows in a different order
    assert lo <= predictor.predict(smallest(space)) + eps and hi >= predictor.predict(largest(space)) - eps
    values = predictor.predict_many([sample(space, random.Random(i)) for i in range(200)])
    assert lo <= values.min() + eps and values.max() <= hi + eps


def test_committed_tables_load_for_their_spaces():
    root = Path(__file__).parents[1] / "latency_tables" / "cpu-ort-1t"
    for name in ("mbv3", "mbv3-tiny"):
        table = load_lut(root / f"{name}.csv", space=get_space(name))
        predictor = LatencyPredictor(table, get_space(name))
        lo, hi = latency_range_ms(predictor)
        assert 0 < lo < hi
        assert table.meta["calibration"]["subnets"], "committed tables are calibrated"


def test_copy_of_table_elsewhere_still_loads(tmp_path):
    src = save_lut(tiny_table(), tmp_path / "a" / "mbv3-tiny.csv")
    dst = tmp_path / "b" / "mbv3-tiny.csv"
    dst.parent.mkdir()
    shutil.copy(src, dst)
    shutil.copy(src.with_name("mbv3-tiny.meta.json"), dst.with_name("mbv3-tiny.meta.json"))
    assert len(load_lut(dst.with_name("mbv3-tiny.meta.json"))) == len(load_lut(src))


def test_table_from_another_cpu_model_warns_but_loads(tmp_path, caplog):
    from hwnas.machine import cpu_model

    table = tiny_table()
    elsewhere = save_lut(
        table.with_meta(cpu="Some Other CPU 9000", profile={"name": "fake", "provider": "cpu"}),
        tmp_path / "a" / "mbv3-tiny.csv",
    )
    here = save_lut(
        table.with_meta(cpu=cpu_model(), profile={"name": "fake", "provider": "cpu"}), tmp_path / "b" / "mbv3-tiny.csv"
    )
    remote = save_lut(
        table.with_meta(cpu="Phone SoC", profile={"name": "fake", "provider": "cpu", "remote": True}),
        tmp_path / "c" / "mbv3-tiny.csv",
    )
    with caplog.at_level("WARNING", logger="hwnas.latency.lut"):
        load_lut(here)
        load_lut(remote)  # measured on the device on purpose: nothing to warn about
        assert not caplog.records
        assert len(load_lut(elsewhere)) == len(table)
    assert len(caplog.records) == 1
    assert "Some Other CPU 9000" in caplog.text and "hwnas profile --device fake --space mbv3-tiny" in caplog.text


def test_table_from_another_generation_with_the_same_cpu_name_warns(tmp_path, caplog):
    from hwnas.machine import cpu_model, cpu_signature

    if cpu_signature() is None:
        pytest.skip("no /proc/cpuinfo: no CPU signature to compare")
    table = tiny_table()
    same = save_lut(
        table.with_meta(cpu=cpu_model(), cpu_signature=cpu_signature(), profile={"name": "fake", "provider": "cpu"}),
        tmp_path / "a" / "mbv3-tiny.csv",
    )
    older = save_lut(
        table.with_meta(
            cpu=cpu_model(),
            cpu_signature="GenuineIntel family 6 model 85 [avx2 avx512f]",
            profile={"name": "fake", "provider": "cpu"},
        ),
        tmp_path / "b" / "mbv3-tiny.csv",
    )
    with caplog.at_level("WARNING", logger="hwnas.latency.lut"):
        load_lut(same)
        assert not caplog.records
        load_lut(older)
    assert len(caplog.records) == 1 and "family 6 model 85" in caplog.text


def test_table_timed_on_an_older_block_graph_warns_but_loads(tmp_path, caplog):
    from hwnas.latency.lut import graph_revision
    from hwnas.space import GRAPH_REVISION

    table = tiny_table()
    assert graph_revision(table.meta) == GRAPH_REVISION  # new tables record the graphs they time
    old_space = {k: v for k, v in table.meta["space"].items() if k != "block_graph_revision"}
    old = save_lut(table.with_meta(space=old_space), tmp_path / "old" / "mbv3-tiny.csv")
    current = save_lut(table, tmp_path / "new" / "mbv3-tiny.csv")
    with caplog.at_level("WARNING", logger="hwnas.latency.lut"):
        load_lut(current)
        assert not caplog.records
        assert len(load_lut(old)) == len(table)
    assert len(caplog.records) == 1 and f"revision 1, this hwnas exports revision {GRAPH_REVISION}" in caplog.text
    assert "hwnas profile --device fake --space mbv3-tiny" in caplog.text


def test_shared_terms_are_recovered_and_used_by_every_prediction_path():
    """Whole-model times made by a known a_r·sum + b_r + c·E + w·P are fitted back exactly, and the predictor, the
    scalar calibration, compound scaling's path and the per-choice arrays (FBNet's E[LAT], the search's gene model)
    all apply the same c and w."""
    from hwnas.latency.calibrate import (
        Calibration,
        CalibrationPoint,
        boundary_melems,
        final_stage_mweights,
        fit_calibration,
    )
    from hwnas.latency.predictor import choice_latency_ms
    from hwnas.search.scale import _scaled_ms

    space = get_space("mbv3-tiny")
    table = tiny_table(space)
    rng = random.Random(0)
    lines, c, w = {24: (0.8, 0.03), 28: (0.85, 0.04), 32: (0.9, 0.05)}, -2.5, 0.3
    points = []
    for i in range(48):
        res = (24, 28, 32)[i % 3]
        arch = sample(space, rng, resolution=res)
        raw, e, p = raw_sum_ms(table, space, arch), boundary_melems(space, arch), final_stage_mweights(space, arch)
        points.append(
            CalibrationPoint(str(arch), res, raw, lines[res][0] * raw + lines[res][1] + c * e + w * p, 0.0, e, p)
        )
    cal = fit_calibration(points)
    assert cal.ms_per_boundary_melem == pytest.approx(c, rel=1e-6)
    assert cal.ms_per_final_stage_mweight == pytest.approx(w, rel=1e-6)
    assert [(r, a, b) for r, a, b in cal.per_resolution] == [
        (r, pytest.approx(a, rel=1e-6), pytest.approx(b, rel=1e-6)) for r, (a, b) in lines.items()
    ]
    assert Calibration.from_meta(cal.to_meta()) == cal
    predictor = LatencyPredictor(table.with_meta(calibration=cal.to_meta()), space)
    archs = [sample(space, rng) for _ in range(20)]
    expected = [
        cal.apply(raw_sum_ms(table, space, a), a.resolution, boundary_melems(space, a), final_stage_mweights(space, a))
        for a in archs
    ]
    assert list(predictor.predict_many(archs)) == pytest.approx(expected, rel=1e-9)
    assert [_scaled_ms(predictor.table, space, a)[0] for a in archs] == pytest.approx(expected, rel=1e-9)
    arrays = choice_latency_ms(table.with_meta(calibration=cal.to_meta()), space, 28)
    from hwnas.space import layer_choices

    a28 = sample(space, rng, resolution=28)
    by_choice = arrays.fixed_ms + sum(
        arrays.stage_ms[s][p, layer_choices(stage).index(layer)]
        for s, (stage, layers) in enumerate(zip(space.stages, a28.stages))
        for p, layer in enumerate(layers)
    )
    assert by_choice == pytest.approx(predictor.predict(a28), rel=1e-9)
    # each shared term needs 12 more subnets: 24 points (6 line parameters) carry c but not w (24 < 6 + 2 + 24) ...
    from_24 = fit_calibration(points[:24])
    assert from_24.ms_per_final_stage_mweight == 0.0 and from_24.ms_per_boundary_melem != 0.0
    # ... and too few subnets for even one (fewer than 12 beyond the parameters): the plain lines, no boundary term
    assert fit_calibration(points[:18], min_per_resolution=2).ms_per_boundary_melem == 0.0  # 18 < 7 + 12
    # weights that would come out cheaper cold than hot (w < 0) are noise: the fit keeps c only
    negative = [dataclasses.replace(pt, measured_ms=pt.measured_ms - 2 * w * pt.final_stage_mweights) for pt in points]
    assert fit_calibration(negative).ms_per_final_stage_mweight == 0.0


def test_block_weights_are_the_exported_parameters_with_batchnorm_folded():
    """P of the calibration counts what a block's exported graph reads: every conv / linear weight and one bias per
    output channel (BatchNorm folds into it) — for MBConv with and without squeeze-excite and expansion, stem, head."""
    from torch import nn

    from hwnas.blocks import build_block
    from hwnas.latency.calibrate import block_weight_melems

    space = get_space("mbv3")
    arch = largest(space, resolution=224)
    specs = list(dict.fromkeys(blocks_of(space, arch) + blocks_of(space, smallest(space, resolution=224))))
    assert {s.op for s in specs} == {"conv", "ir", "head"} and {s.se for s in specs} == {True, False}
    assert {s.expand == 1 for s in specs if s.op == "ir"} == {True, False}
    for spec in specs:
        module = build_block(spec)
        expected = sum(
            m.weight.numel() + m.weight.shape[0] for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
        )
        assert block_weight_melems(spec) * 1e6 == pytest.approx(expected, abs=0.5), spec.key


def test_tables_with_the_old_final_stage_term_ask_for_a_rebuild():
    from hwnas.latency.calibrate import Calibration

    with pytest.raises(HwnasError, match="rebuild the table"):
        Calibration.from_meta({"slope": 1.1, "offset_ms": 0.0, "final_stage_extra_slope": 0.28})
    assert Calibration.from_meta({"slope": 1.1, "offset_ms": 0.0, "final_stage_extra_slope": 0.0}).slope == 1.1
