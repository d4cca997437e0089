"""Fidelity measured on the device: a bundle made with --validate times held-out subnets with the same protocol, the
import prints `hwnas latency validate`'s report from those timings and stores it in the table's metadata, and a machine
that cannot time the device shows the stored report. Bad results files are one-line errors that write nothing."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from device_bundle import RES, make_bundle, restamp, run_device_script, write_profile

from hwnas.cli.main import main
from hwnas.latency import load_lut
from hwnas.latency.fidelity import FidelityReport
from hwnas.latency.validate import heldout_archs
from hwnas.space import GRAPH_REVISION, get_space

ROOT = Path(__file__).parents[1]
SPACE = get_space("mbv3-tiny")
FIDELITY_KEYS = (
    "subnets",
    "within_10pct",
    "within_5pct",
    "mape",
    "kendall_tau",
    "flops_kendall_tau",
    "raw_within_10pct",
    "speed_factor",
    "drift_corrected",
)


@pytest.fixture(scope="module")
def device_run(tmp_path_factory) -> dict:
    """One bundle of a remote device profile with --validate 6, timed twice by its script without torch or hwnas."""
    tmp = tmp_path_factory.mktemp("fidelity")
    manifest = make_bundle(tmp / "bundle", write_profile(tmp, remote=True), "--validate", "6")
    runs = []
    for seed in ("0", "1"):
        out = tmp / f"run{seed}" / "results.csv"
        out.parent.mkdir()
        proc = run_device_script(tmp / "bundle", out, "--seed", seed)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(out)
    return {"manifest": manifest, "results": runs[0], "other_run": runs[1]}


def test_import_reports_fidelity_measured_on_the_device(device_run, tmp_path, capsys):
    manifest, results = device_run["manifest"], device_run["results"]
    kinds = [item["kind"] for item in manifest["items"]]
    assert kinds.count("heldout") == 6 and kinds.count("reference") == 2 and manifest["validation"]["seed"] == 1
    calibration = {item["key"].removeprefix("subnet:") for item in manifest["items"] if item["kind"] == "subnet"}
    expected = heldout_archs(SPACE, 6, resolutions=(RES,), exclude=calibration, seed=1)  # as validate draws them
    heldout = [item["key"].removeprefix("heldout:") for item in manifest["items"] if item["kind"] == "heldout"]
    assert heldout == [str(a) for a in expected] and not set(heldout) & calibration
    meta = json.loads(results.with_name("results.meta.json").read_text())
    assert meta["bundle"]["id"] == manifest["bundle_id"] and meta["validation"]["chunks"] == 1
    assert set(meta["validation"]["halves_ms"]) == {"heldout:" + a for a in heldout}

    capsys.readouterr()
    tables = tmp_path / "tables"
    assert main(["profile", "--import", str(results), "--device", "pixel", "--out", str(tables), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    fidelity = summary["fidelity"]
    assert set(FIDELITY_KEYS) <= set(fidelity) and fidelity["subnets"] == 6
    assert fidelity["drift_corrected"]["references"] == 2 and summary["fewshot"] is None
    lut = Path(summary["lut"])
    stored = json.loads(lut.with_name("mbv3-tiny.meta.json").read_text())["device_fidelity"]
    assert stored["source"] == "device" and stored["bundle_id"] == manifest["bundle_id"]
    report = FidelityReport.from_meta(stored["report"])
    assert report.subnets == 6 and _flat(report.summary()) == pytest.approx(_flat(fidelity))
    rows = pd.read_csv(results, dtype={"key": str}).set_index("key")
    assert {r["arch"] for r in report.records} == set(heldout)
    for rec in report.records:  # the device's own timings, not anything measured here
        assert rec["measured_ms"] == pytest.approx(rows.loc["heldout:" + rec["arch"], "ms_p50"], abs=1e-6)
    table = load_lut(lut, space=SPACE)
    assert table.meta["bundle_id"] == manifest["bundle_id"] and len(table.meta["calibration"]["subnets"]) == 2

    # on a machine that cannot time the remote device, validate shows the stored report and says so
    assert main(["latency", "validate", "--lut", str(lut), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["stored"]["bundle_id"] == manifest["bundle_id"]
    assert _flat({k: shown[k] for k in FIDELITY_KEYS}) == pytest.approx(_flat({k: fidelity[k] for k in FIDELITY_KEYS}))
    assert main(["latency", "validate", "--lut", str(lut), "--stored", "--records", str(tmp_path / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "stored report of the device" in out and "not re-timed here" in out
    assert len(pd.read_csv(tmp_path / "r.csv")) == 6
    assert main(["latency", "validate", "--lut", str(lut), "--subnets", "4"]) == 2
    err = capsys.readouterr().err
    assert "--subnets" in err and "stored" in err and err.count("\n") == 1


def test_stored_report_asked_of_a_table_without_one(capsys):
    lut = ROOT / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"
    assert main(["latency", "validate", "--lut", str(lut), "--stored"]) == 2
    err = capsys.readouterr().err
    assert "holds no device fidelity report" in err and "--validate" in err and err.count("\n") == 1


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    """Nested report dicts as {dotted key: leaf}, so pytest.approx can compare them."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


def _set_row(frame: pd.DataFrame, value: float) -> pd.DataFrame:
    frame.loc[frame["key"].str.startswith("heldout:").idxmax(), "ms_p50"] = value
    return frame


def _edit_meta(meta: dict, **space: object) -> dict:
    meta["space"] = {**meta["space"], **space}
    return meta


CASES = {  # name: (edit of the CSV rows, edit of the meta, restamp the digest as the device would, expected error)
    "missing row": (lambda f: f.iloc[1:], None, True, "rows of bundle"),
    "nan time": (lambda f: _set_row(f, float("nan")), None, True, "NaN"),
    "negative time": (lambda f: _set_row(f, -0.5), None, True, "zero or negative"),
    "edited csv": (lambda f: _set_row(f, 1.2345), None, False, "not the results file"),
    "other space": (None, lambda m: _edit_meta(m, hash="0123456789ab"), False, "another version of space"),
    "other graph revision": (
        None,
        lambda m: _edit_meta(m, block_graph_revision=GRAPH_REVISION - 1),
        False,
        f"revision {GRAPH_REVISION - 1}",
    ),
    "older script": (None, lambda m: {k: v for k, v in m.items() if k != "bundle"}, False, "no bundle id"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_results_are_one_line_errors(device_run, tmp_path, capsys, case):
    edit_rows, edit_meta, stamp, message = CASES[case]
    results = tmp_path / "results.csv"
    shutil.copy(device_run["results"], results)
    shutil.copy(device_run["results"].with_name("results.meta.json"), tmp_path / "results.meta.json")
    if edit_rows is not None:
        edit_rows(pd.read_csv(results, dtype={"key": str})).to_csv(results, index=False)
    if edit_meta is not None:
        meta_file = tmp_path / "results.meta.json"
        meta_file.write_text(json.dumps(edit_meta(json.loads(meta_file.read_text()))))
    if stamp:
        restamp(results)
    capsys.readouterr()
    tables = tmp_path / "tables"
    assert main(["profile", "--import", str(results), "--device", "pixel", "--out", str(tables)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not tables.exists()  # nothing written


def test_results_of_one_run_with_the_meta_of_another(device_run, tmp_path, capsys):
    shutil.copy(device_run["results"], tmp_path / "results.csv")
    shutil.copy(device_run["other_run"].with_name("results.meta.json"), tmp_path / "results.meta.json")
    capsys.readouterr()
    argv = ["profile", "--import", str(tmp_path / "results.csv"), "--device", "pixel", "--out", str(tmp_path / "t")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "another run or bundle" in err and err.count("\n") == 1 and not (tmp_path / "t").exists()
    ref = ROOT / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"  # a block bundle takes no reference table
    argv = ["profile", "--import", str(device_run["results"]), "--device", "pixel", "--out", str(tmp_path / "t")]
    assert main([*argv, "--from-table", str(ref)]) == 2
    err = capsys.readouterr().err
    assert "block bundle" in err and "--from-table" in err and not (tmp_path / "t").exists()
