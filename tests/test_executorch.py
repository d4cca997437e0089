"""ExecuTorch runtime (hwnas[mobile]): missing-extra error, threadpool control, .pte export parity on real Fashion-MNIST
images, and a LUT / bundle round trip for a few mbv3-tiny blocks with the real ExecuTorch runtime.

Lowering is the slow part (seconds per model), so the tests lower a handful of small models once per module.
"""

from __future__ import annotations

import dataclasses
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
    return dataclasses.replace(load_profile(name), warmup_s=0.05, warmup=1, rounds=2, repeats=3, remeasure=0)


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
    runner = ExecuTorchRunner(profile, cache_dir=cache)
    models = {s.key: (build_block(s), (1, s.in_ch, s.in_hw, s.in_hw)) for s in picked}
    assert runner.prepare(list(models.values()), workers=2) == 2  # lowered in 2 processes into the cache
    assert len(list(cache.glob("*.pte"))) == 2 and runner.prepare(list(models.values()), workers=2) == 0
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
