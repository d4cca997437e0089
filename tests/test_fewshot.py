"""Few-shot tables: a whole-subnet bundle (no blocks) + a reference table of the same space → a normal LatencyTable
whose meta says how it was fitted, and the device's fidelity report on held-out subnets. The fit itself is checked on
targets built from the reference by known rules (per-kernel factors, an extra depthwise cost, a plain scale)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from device_bundle import RES, make_bundle, run_device_script, write_profile

from hwnas.cli.main import main
from hwnas.digest import file_sha256
from hwnas.latency import LatencyPredictor, LatencyTable, load_lut, load_profile, save_lut
from hwnas.latency.calibrate import calibration_archs
from hwnas.latency.fewshot import CANDIDATES, depthwise_mmacs, fewshot_table, row_classes
from hwnas.latency.harness import TimingStats
from hwnas.latency.profiler import table_meta
from hwnas.latency.validate import heldout_archs
from hwnas.space import blocks_of, get_space
from hwnas.stats import kendall_tau

ROOT = Path(__file__).parents[1]
REF = ROOT / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"  # committed: blocks of mbv3-tiny at 24, 28, 32 px
SPACE = get_space("mbv3-tiny")


def _target(rule) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """A made-up device: each row of REF at RES transformed by `rule(ref_ms, spec, row_class)`."""
    ref = load_lut(REF)
    return {key: rule(ref.ms(key), spec, cls) for key, (spec, cls) in row_classes(SPACE, (RES,)).items()}


def _fit_and_check(rows: dict[str, float], n: int = 24) -> LatencyTable:
    """Fit a few-shot table on `n` whole subnets of the made-up device (their row sums + a fixed overhead) and check
    that it predicts 40 held-out subnets of that device."""
    overhead_ms = 0.05

    def truth(arch) -> float:  # type: ignore[no-untyped-def]
        return overhead_ms + sum(rows[b.key] for b in blocks_of(SPACE, arch))

    train = calibration_archs(SPACE, n, resolutions=(RES,))
    held = heldout_archs(SPACE, 40, resolutions=(RES,), exclude={str(a) for a in train}, seed=1)
    meta = table_meta(SPACE, load_profile("cpu-ort-1t"), (RES,))
    table = fewshot_table(load_lut(REF), SPACE, {a: (truth(a), 0.0) for a in train}, resolutions=(RES,), meta=meta)
    assert set(table.rows) == set(rows) and all(st.p50_ms > 0 for st in table.rows.values())
    predicted = LatencyPredictor(table, SPACE).predict_many(held)
    measured = np.array([truth(a) for a in held])
    assert float(np.mean(np.abs(predicted / measured - 1))) < 0.02
    assert kendall_tau(predicted, measured) > 0.95
    fs = table.meta["fewshot"]
    assert fs["subnets"] == n and fs["model"] in dict(CANDIDATES) and len(fs["candidates"]) == len(CANDIDATES)
    assert len(table.meta["calibration"]["subnets"]) == n
    return table


def test_a_scaled_reference_keeps_the_global_model():
    table = _fit_and_check(_target(lambda ms, spec, cls: 2.5 * ms))
    fs = table.meta["fewshot"]
    assert fs["model"] == "global"  # the simplest model within one standard error of the best: nothing to add
    assert fs["factors"]["global"] == pytest.approx(2.5, rel=0.05)


def test_per_kernel_costs_are_found():
    factor = {3: 1.0, 5: 1.6, 7: 4.0}
    table = _fit_and_check(_target(lambda ms, spec, cls: ms * (factor[cls.kernel] if cls.kind == "ir" else 1.3)))
    assert table.meta["fewshot"]["model"] != "global"


def test_an_extra_depthwise_cost_is_found():
    rows = _target(lambda ms, spec, cls: 1.2 * ms + (0.02 * depthwise_mmacs(spec) if cls.kernel == 7 else 0.0))
    table = _fit_and_check(rows)
    assert "depthwise" in table.meta["fewshot"]["model"]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory) -> dict:
    """`hwnas bundle --device cpu-ort-1t --whole-subnets 10 --validate 6`, timed by its script without torch or hwnas."""
    tmp = tmp_path_factory.mktemp("fewshot")
    args = ["--whole-subnets", "10", "--validate", "6"]
    manifest = make_bundle(tmp / "bundle", ROOT / "profiles" / "cpu-ort-1t.yaml", *args)
    results = tmp / "results.csv"
    proc = run_device_script(tmp / "bundle", results, "--warmup-s", "0.2", "--rounds", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"manifest": manifest, "results": results}


def test_whole_subnet_bundle_imports_as_a_fewshot_table(whole_run, tmp_path, capsys):
    manifest = whole_run["manifest"]
    kinds = [item["kind"] for item in manifest["items"]]
    assert manifest["mode"] == "whole-subnets" and "block" not in kinds
    assert kinds.count("subnet") == 10 and kinds.count("heldout") == 6
    capsys.readouterr()
    argv = ["profile", "--import", str(whole_run["results"]), "--device", "ort-fewshot", "--out", str(tmp_path)]
    assert main([*argv, "--from-table", str(REF), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fidelity"]["subnets"] == 6 and summary["calibration_subnets"] == 10
    fs = summary["fewshot"]
    assert fs["subnets"] == 10 and fs["model"] in dict(CANDIDATES) and fs["cv"]["method"] == "leave-one-out"
    table = load_lut(Path(summary["lut"]), space=SPACE)  # a normal table: same columns, loads and predicts
    assert set(table.rows) == set(row_classes(SPACE, (RES,))) and table.resolutions == (RES,)
    meta = table.meta["fewshot"]
    assert meta["reference"]["sha256"] == file_sha256(REF) and meta["reference"]["device"] == "cpu-ort-1t"
    assert table.meta["device_fidelity"]["report"]["subnets"] == 6
    assert LatencyPredictor(table, SPACE).predict(calibration_archs(SPACE, 1, resolutions=(RES,))[0]) > 0


def test_fewshot_import_errors(whole_run, tmp_path, capsys):
    results = str(whole_run["results"])
    partial = tmp_path / "partial" / "mbv3-tiny.csv"  # a reference lacking the rows at the bundle's resolution
    ref = load_lut(REF)
    rows = {k: v for k, v in ref.rows.items() if not k.startswith(f"{RES}x")}
    save_lut(LatencyTable(rows, {**ref.meta, "resolutions": [28, 32]}), partial)
    out = tmp_path / "tables"
    cases = [
        (["--import", results], "--from-table"),
        (["--import", results, "--from-table", str(ROOT / "latency_tables/cpu-ort-1t/mbv3.csv")], "space"),
        (["--import", results, "--from-table", str(partial)], "lacks"),
        (["--from-table", str(REF)], "--import"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["profile", *args, "--device", "x", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (args, err)
        assert not out.exists()
    profile = ROOT / "profiles" / "cpu-ort-1t.yaml"
    argv = ["bundle", "--device", str(profile), "--space", "mbv3-tiny", "--out", str(tmp_path / "b")]
    assert main([*argv, "--whole-subnets", "10", "--calib-subnets", "4"]) == 2
    assert "--calib-subnets" in capsys.readouterr().err and not (tmp_path / "b" / "manifest.json").exists()


@pytest.mark.slow  # lowers 6 whole subnets to .pte (~10 CPU s each) and starts the ExecuTorch runtime: ~80 s
def test_pte_whole_subnet_bundle(tmp_path, capsys, monkeypatch):
    pytest.importorskip("executorch")
    monkeypatch.setenv("HWNAS_CACHE_DIR", str(tmp_path / "cache"))  # the bundle's default cache of lowered programs
    profile = write_profile(tmp_path, runtime="executorch")
    manifest = make_bundle(tmp_path / "bundle", profile, "--whole-subnets", "4", "--validate", "2")
    assert manifest["format"] == "pte" and manifest["mode"] == "whole-subnets"
    assert all(item["file"].endswith(".pte") for item in manifest["items"])
    assert len(list((tmp_path / "cache" / "pte").glob("*.pte"))) == 4 + 2  # references reuse their subnet's file
    results = tmp_path / "results.csv"
    proc = run_device_script(tmp_path / "bundle", results, script="measure_bundle_pte.py", blocked="hwnas")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.rmtree(tmp_path / "bundle")  # the import needs only the results
    capsys.readouterr()
    argv = ["profile", "--import", str(results), "--device", "phone-et", "--out", str(tmp_path / "t")]
    assert main([*argv, "--from-table", str(REF), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fidelity"]["subnets"] == 2 and summary["fewshot"]["subnets"] == 4
    table = load_lut(Path(summary["lut"]), space=SPACE)
    assert table.meta["profile"]["runtime"] == "executorch" and table.meta["device_fidelity"]["source"] == "device"
    assert all(isinstance(st, TimingStats) and st.p50_ms > 0 for st in table.rows.values())
