"""ExecuTorch runtime (hwnas[mobile]): missing-extra error, threadpool control, .pte export parity on real Fashion-MNIST
images, and a LUT / bundle round trip for a few mbv3-tiny blocks with the real ExecuTorch runtime.

Lowering is the slow part (seconds per model), so the tests lower a handful of small models once per module.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.latency import load_profile
from hwnas.space import Arch, distinct_blocks, get_space, smallest

ROOT = Path(__file__).resolve().parents[1]
SPACE = get_space("mbv3-tiny")
RES = 28


def _fast(name: str):  # the shipped profile with a short protocol: tests check plumbing, not precision
    return dataclasses.replace(
        load_profile(name), warmup_s=0.05, warmup=1, rounds=2, repeats=3, remeasure=0, calib_passes=0
    )


def _hide_executorch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "executorch" or n.startswith("executorch.")] + ["executorch"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import executorch...` now raises ImportError


def test_missing_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwnas.cli.main import main
    from hwnas.latency.runtime import make_runner

    _hide_executorch(monkeypatch)
    with pytest.raises(HwnasError, match=r"pip install 'hwnas\[mobile\]'"):
        make_runner(load_profile("cpu-et-xnnpack-1t"))
    rc = main(
        [
            "profile",
            "--device",
            "cpu-et-xnnpack-1t",
            "--space",
            "mbv3-tiny",
            "--out",
            str(tmp_path),
            "--resolutions",
            "28",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2
    assert err.startswith("hwnas: error:") and "pip install 'hwnas[mobile]'" in err


def test_profiles_and_threadpool() -> None:
    from hwnas.latency.executorch_runner import ExecuTorchRunner, thread_count

    one, two = load_profile("cpu-et-xnnpack-1t"), load_profile("cpu-et-xnnpack-2t")
    assert (one.runtime, one.threads, one.clock) == ("executorch", 1, "thread")
    assert (two.runtime, two.threads, two.clock) == ("executorch", 2, "wall")
    ExecuTorchRunner(two)
    assert thread_count() == 2
    ExecuTorchRunner(one)
    assert thread_count() == 1
    with pytest.raises(HwnasError, match="fp32"):
        ExecuTorchRunner(dataclasses.replace(one, dtype="int8"))


@pytest.fixture(scope="module")
def fashion_images(fashion_dir: Path) -> torch.Tensor:
    from hwnas.data import batches, load_dataset

    data = load_dataset("fashion-mnist", fashion_dir, val_size=1000, seed=0)
    x, _ = next(iter(batches(data.test, batch_size=64, resolution=RES)))
    return x


@pytest.mark.slow  # lowers a whole subnet: ~40 s CPU
def test_pte_export_parity_and_latency(tmp_path: Path, fashion_images: torch.Tensor) -> None:
    from hwnas.blocks import build_model, init_weights
    from hwnas.export.pte import check_pte_parity, export_pte, measure_pte_ms

    arch = Arch.parse(str(smallest(SPACE, resolution=RES)))
    torch.manual_seed(0)
    model = build_model(SPACE, arch)
    init_weights(model)
    model.train()
    with torch.no_grad():  # realistic BN statistics, so logits are not all alike
        for i in range(0, 64, 16):
            model(fashion_images[i : i + 16])
    model.eval()
    path = export_pte(model, tmp_path / "model.pte", space=SPACE, arch=arch)
    assert path.stat().st_size > 1000
    parity = check_pte_parity(model, path, fashion_images)
    assert parity.n_images == 64
    assert parity.max_abs_diff <= 1e-4, parity
    assert parity.top1_agreement == 1.0
    ms = measure_pte_ms(path, (1, 1, RES, RES), _fast("cpu-et-xnnpack-1t"))
    assert 0 < ms < 1000
    with pytest.raises(HwnasError, match="executorch profile"):
        measure_pte_ms(path, (1, 1, RES, RES), load_profile("cpu-ort-1t"))


@pytest.mark.slow  # lowers 2 blocks in 2 worker processes + starts the standalone script: ~35 s CPU
def test_lut_and_bundle_round_trip(tmp_path: Path) -> None:
    from hwnas.blocks import build_block
    from hwnas.latency.bundle import import_results
    from hwnas.latency.executorch_runner import ExecuTorchRunner
    from hwnas.latency.harness import Protocol, run_protocol
    from hwnas.latency.lut import LatencyTable, load_lut, save_lut
    from hwnas.latency.predictor import raw_sum_ms
    from hwnas.latency.profiler import table_meta

    specs = distinct_blocks(SPACE, (RES,))[RES]
    picked = [specs[0], next(s for s in specs if s.se)]  # the stem and an SE MBConv (lowering costs seconds each)
    profile = _fast("cpu-et-xnnpack-1t")
    cache = tmp_path / "cache"
    runner = ExecuTorchRunner(profile, cache_dir=cache, workers=2)
    models = {s.key: (build_block(s), (1, s.in_ch, s.in_hw, s.in_hw)) for s in picked}
    assert runner.prepare(list(models.values())).lowered == 2  # lowered in 2 processes into the cache
    runner.close()
    assert len(list(cache.glob("*.pte"))) == 2 and runner.prepare(list(models.values())).cache_hits == 2
    loaded = {k: runner.load(m, shape) for k, (m, shape) in models.items()}  # from the cache
    try:
        stats = run_protocol(
            {k: ld.run for k, ld in loaded.items()},
            Protocol.from_profile(profile),
            rng=random.Random(0),
            timer=time.thread_time_ns,
        )
    finally:
        for ld in loaded.values():
            ld.release()
    assert len(list(cache.glob("*.pte"))) == 2
    assert all(st.p50_ms > 0 and st.n == profile.rounds * profile.repeats for st in stats.values())
    table = LatencyTable(stats, table_meta(SPACE, profile, (RES,)))
    path = save_lut(table, tmp_path / "cpu-et-xnnpack-1t" / "mbv3-tiny.csv")
    back = load_lut(path, space=SPACE)
    assert back.meta["profile"]["runtime"] == "executorch"
    assert {k: round(v.p50_ms, 6) for k, v in back.rows.items()} == {k: round(v.p50_ms, 6) for k, v in stats.items()}
    with pytest.raises(HwnasError, match="LUT miss"):  # the other blocks were not measured: never silently 0
        raw_sum_ms(back, SPACE, smallest(SPACE, resolution=RES))

    # Bundle: the same blocks as .pte (from the cache), timed by the standalone script, results readable.
    out = tmp_path / "bundle"
    from hwnas.latency.bundle_pte import write_pte_bundle

    manifest = write_pte_bundle(
        SPACE, profile, out, resolutions=(RES,), calib_subnets=0, keys=[s.key for s in picked], cache_dir=cache
    )
    assert manifest["format"] == "pte" and not manifest["complete"] and len(manifest["items"]) == 2
    assert (out / "measure_bundle_pte.py").is_file()
    proc = subprocess.run(
        [
            sys.executable,
            str(out / "measure_bundle_pte.py"),
            str(out),
            "--out",
            str(tmp_path / "results.csv"),
            "--warmup-s",
            "0.05",
            "--rounds",
            "2",
            "--repeats",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0] == "key,ms_p50,ms_p90,cv,n"
    measured = {line.split(",")[0]: float(line.split(",")[1]) for line in lines[1:]}
    assert set(measured) == set(stats) and all(v > 0 for v in measured.values())
    with pytest.raises(HwnasError, match="blocks missing"):  # a partial bundle never becomes a table
        import_results(tmp_path / "results.csv", device="phone-et", out_dir=tmp_path / "tables")
    with pytest.raises(HwnasError, match="runtime onnxruntime"):
        write_pte_bundle(SPACE, load_profile("cpu-ort-1t"), tmp_path / "b2", resolutions=(RES,))


# ---- lowering for timing: workers, the on-disk .pte cache, CLI flags ------------------------------------------------


def _tiny_space():  # type: ignore[no-untyped-def]
    """A real one-stage space with 5 distinct blocks and 1 subnet: a whole profile lowers in seconds."""
    from hwnas.space.presets import SpaceSpec, StageSpec

    stage = StageSpec(8, 2, "re", False, (1,), (3,), (3,))
    return SpaceSpec("et-tiny", 1, 10, (16,), 8, 2, 8, (stage,), 2, 16)


@pytest.mark.slow  # ~20 lowerings of small models, each twice: ~40 s on 2 cores
def test_lean_lowering_changes_no_byte() -> None:
    """The timing path's shortcuts (verifier off, BatchNorms folded first, hwnas.latency.lean_lowering: registry
    lookups, provenance copies, deferred recompiles, no re-trace of graphs a pass left unchanged) give the program that
    ExecuTorch's own lowering gives: one block of every (op, kernel, expand, stride, SE, activation) combination of
    mbv3-tiny at 28 px up to 16 blocks, and a whole subnet with its classifier."""
    from hwnas.blocks import build_block, build_model
    from hwnas.latency.executorch_runner import fold_batchnorm, lower_for_timing, pte_bytes

    kinds = {}
    for spec in distinct_blocks(SPACE, (RES,))[RES]:
        kinds.setdefault((spec.op, spec.kernel, spec.expand > 1, spec.stride, spec.se, spec.act), spec)
    torch.manual_seed(0)
    models = [(build_block(s), (1, s.in_ch, s.in_hw, s.in_hw)) for s in list(kinds.values())[:16]]
    models.append((build_model(SPACE, smallest(SPACE, resolution=RES)), (1, SPACE.in_channels, RES, RES)))
    assert len(models) >= 10
    for model, shape in models:
        assert lower_for_timing(model, shape) == pte_bytes(fold_batchnorm(model), shape, check_ir=False), shape


def test_cache_key_and_corrupt_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hwnas.latency.pte_cache as pc
    from hwnas.blocks import build_block
    from hwnas.latency.executorch_runner import executorch_version
    from hwnas.space import GRAPH_REVISION

    spec = distinct_blocks(SPACE, (RES,))[RES][1]
    shape = (1, spec.in_ch, spec.in_hw, spec.in_hw)
    torch.manual_seed(0)
    model, twin = build_block(spec), build_block(spec)  # same structure, other weights
    fields = pc.cache_key_fields(model, shape)
    assert fields["graph_revision"] == str(GRAPH_REVISION)
    assert (fields["torch"], fields["executorch"]) == (torch.__version__, executorch_version())
    assert fields["lowering_recipe"] == str(pc.LOWERING_RECIPE) and fields["module"] == repr(model)
    key = pc.cache_key(model, shape)
    assert pc.cache_key(twin, shape) == key  # weights do not change latency, so not the key
    assert pc.cache_key(model, (1, spec.in_ch, spec.in_hw + 4, spec.in_hw + 4)) != key
    monkeypatch.setattr(pc, "GRAPH_REVISION", GRAPH_REVISION + 1)
    assert pc.cache_key(model, shape) != key  # blocks that export to other graphs: a miss, never a stale hit
    monkeypatch.undo()

    assert pc.read_cached(tmp_path, key) is None
    path = pc.write_cached(tmp_path, key, b"program bytes")
    assert pc.read_cached(tmp_path, key) == b"program bytes"
    path.write_bytes(b"program")  # truncated in place
    assert pc.read_cached(tmp_path, key) is None and not path.exists()  # a miss, and the bad file is gone
    pc.write_cached(tmp_path, key, b"old")
    pc.write_cached(tmp_path, key, b"new")
    assert pc.read_cached(tmp_path, key) == b"new" and len(list(tmp_path.glob(f"{key}-*.pte"))) == 1


@pytest.mark.slow  # 2 spawned workers (import torch + ExecuTorch), ~10 small lowerings: 13 s idle, ~60 s on 2 busy cores
def test_workers_cache_and_profile_meta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import json

    from hwnas.blocks import build_block, build_model
    from hwnas.export.pte import export_pte, pte_logits
    from hwnas.latency.executorch_runner import ExecuTorchRunner, fold_batchnorm, load_pte, pte_bytes
    from hwnas.latency.lut import meta_path
    from hwnas.latency.profiler import profile_space
    from hwnas.latency.pte_cache import cache_key, read_cached

    space, profile, cache = _tiny_space(), _fast("cpu-et-xnnpack-1t"), tmp_path / "pte"
    specs = distinct_blocks(space, space.resolutions)[16]
    torch.manual_seed(0)
    models = [(build_block(s), (1, s.in_ch, s.in_hw, s.in_hw)) for s in specs[:2]]
    open_files = len(os.listdir("/proc/self/fd"))
    runner = ExecuTorchRunner(profile, cache_dir=cache, workers=2)
    first = runner.prepare(models)
    assert (first.programs, first.lowered, first.cache_hits, first.workers) == (2, 2, 0, 2)
    # The workers' shortcuts (verifier off, registry lookup and provenance copies spared) change no byte of what
    # export's lowering makes of the BatchNorm-folded model, and the timed program computes what the model does.
    model, shape = models[0]
    timed = read_cached(cache, cache_key(model, shape))
    assert timed is not None and timed == pte_bytes(fold_batchnorm(model), shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))  # the input `load_pte` runs on
    with torch.no_grad():
        assert torch.allclose(load_pte(timed, shape).run()[0], model(x), atol=1e-5)  # type: ignore[index]

    # A whole profile through the same runner: the 2 blocks come from the cache, the rest from the live workers.
    table = profile_space(space, profile, out_path=tmp_path / "a.csv", calib_subnets=1, runner=runner, resume=False)
    n = len(specs) + 1  # blocks + the one calibration subnet
    low = table.meta["lowering"]
    assert (low["programs"], low["cache_hits"], low["lowered"]) == (n, 2, n - 2)
    assert low["cache_dir"] == str(cache) and low["cpu_seconds_per_program"] > 0
    assert len(list(cache.glob("*.pte"))) == n and all(st.p50_ms > 0 for st in table.rows.values())
    # the workers import ExecuTorch as quietly as the main process: no library notice reaches the terminal
    assert "Enum subclass" not in capfd.readouterr().err
    # Models reach the workers as plain pickles: no shared-memory file descriptor per tensor left open (a first
    # mbv3-tiny build once ran out of the 20000 allowed that way)
    assert len(os.listdir("/proc/self/fd")) < open_files + 10

    profile_space(
        space, profile, out_path=tmp_path / "b.csv", calib_subnets=1, runner=ExecuTorchRunner(profile, cache_dir=cache)
    )
    low = json.loads(meta_path(tmp_path / "b.csv").read_text())["lowering"]  # recorded in the table's meta.json
    assert (low["programs"], low["cache_hits"], low["lowered"], low["workers"]) == (n, n, 0, 0)

    victim = next(cache.glob(f"{cache_key(*models[0])}-*.pte"))
    victim.write_bytes(victim.read_bytes()[:100])  # a truncated entry is lowered again, not loaded
    redo = ExecuTorchRunner(profile, cache_dir=cache).prepare(models)
    assert (redo.cache_hits, redo.lowered) == (1, 1)
    assert read_cached(cache, cache_key(*models[0])) is not None

    # Export never reads the timing cache, even where the CLI would find it: the shipped program has its own weights.
    monkeypatch.setenv("HWNAS_CACHE_DIR", str(tmp_path))
    arch = smallest(space, resolution=16)
    model = build_model(space, arch).eval()
    cached = read_cached(cache, cache_key(model, (1, 1, 16, 16)))
    assert cached is not None  # profiled above with other random weights
    shipped = export_pte(model, tmp_path / "model.pte", space=space, arch=arch)
    assert shipped.read_bytes() != cached
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(torch.as_tensor(pte_logits(shipped, x)), model(x), atol=1e-4)


def _synthetic_et_table(tmp_path: Path) -> Path:
    """A 24-px mbv3-tiny table on the fast executorch profile, calibrated on synthetic timings (validate measures)."""
    from search_lut import synthetic_table

    from hwnas.latency.calibrate import calibration_archs
    from hwnas.latency.lut import save_lut
    from hwnas.latency.predictor import raw_sum_ms
    from hwnas.latency.profiler import calibrate_table

    table = synthetic_table(SPACE, resolutions=(24,)).with_meta(profile=_fast("cpu-et-xnnpack-1t").to_dict())
    archs = calibration_archs(SPACE, 6, resolutions=(24,))
    table = calibrate_table(table, SPACE, {a: (1.1 * raw_sum_ms(table, SPACE, a), 0.01) for a in archs})
    return save_lut(table, tmp_path / "cpu-et-xnnpack-1t" / "mbv3-tiny.csv")


@pytest.mark.slow  # 7 blocks lowered in 2 spawned workers, then timed: ~15 s on 2 cores
def test_missing_rows_of_an_executorch_table_are_lowered_and_timed(tmp_path: Path) -> None:
    """`--strategy scale` times the blocks a table lacks on the table's own runtime: for ExecuTorch, lowered by the
    runner's workers first, then timed with reference rows of the table."""
    from hwnas.latency import load_lut
    from hwnas.latency.extra_rows import measure_extra_rows

    table = load_lut(_synthetic_et_table(tmp_path), space=SPACE)
    new = [s for s in distinct_blocks(SPACE, (RES,))[RES] if s.key not in table][:1]
    assert new
    measured = measure_extra_rows(table, new)
    assert set(measured.rows) == {new[0].key} and measured.rows[new[0].key].p50_ms > 0
    assert measured.references and measured.factor > 0


@pytest.mark.slow  # lowers one mbv3-tiny subnet twice in-process: 12 s idle, ~55 s on 2 busy cores
def test_validate_cache_flags_and_json_with_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from hwnas.cli.main import main

    lut = _synthetic_et_table(tmp_path)
    home = tmp_path / "cache-home"
    monkeypatch.setenv("HWNAS_CACHE_DIR", str(home))
    argv = ["latency", "validate", "--lut", str(lut), "--subnets", "1", "--references", "0", "--json"]

    assert main([*argv, "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out)["subnets"] == 1
    assert not home.exists()  # --no-cache: nothing kept on disk

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # progress bars on, as in a terminal
    assert main(argv) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["subnets"] == 1  # stdout stays one JSON document
    assert "lower .pte" in out.err  # the lowering bar went to stderr
    assert len(list((home / "pte").glob("*.pte"))) == 1  # default location: $HWNAS_CACHE_DIR/pte


def test_cache_flags_are_never_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hwnas.cli.main import main

    out = tmp_path / "tables"
    rc = main(["profile", "--device", "cpu-ort-1t", "--space", "mbv3-tiny", "--out", str(out), "--cache-dir", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--cache-dir applies to executorch profiles" in err[0]
    assert not out.exists()  # refused before anything was written
    bundle = tmp_path / "bundle"
    rc = main(["bundle", "--device", "cpu-ort-1t", "--space", "mbv3-tiny", "--out", str(bundle), "--no-cache"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--no-cache applies to executorch profiles" in err[0]
    assert not bundle.exists()
    rc = main(["profile", "--import", str(tmp_path / "results.csv"), "--device", "phone", "--no-cache"])
    assert rc == 2 and "--import reads timings" in capsys.readouterr().err
    assert main(["profile", "--device", "cpu-et-xnnpack-1t", "--cache-dir", "x", "--no-cache"]) == 2
    assert "not allowed with" in capsys.readouterr().err
