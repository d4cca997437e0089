"""bundle -> measure_bundle.py (numpy + onnxruntime only, hwnas/latency/device/) -> profile --import -> the same LUT."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hwnas.cli.main import main
from hwnas.latency import LatencyPredictor, load_lut, raw_sum_ms
from hwnas.machine import cpu_model, cpu_signature
from hwnas.space import Arch, distinct_blocks, get_space

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_bundle_measure_import_round_trip(tmp_path, capsys, caplog):
    bundle = tmp_path / "bundle"
    assert (
        main(
            [
                "bundle",
                "--device",
                "remote-template",
                "--space",
                "mbv3-tiny",
                "--resolutions",
                "28",
                "--calib-subnets",
                "3",
                "--out",
                str(bundle),
            ]
        )
        == 0
    )
    capsys.readouterr()
    manifest = json.loads((bundle / "manifest.json").read_text())
    space = get_space("mbv3-tiny")
    block_keys = {s.key for s in distinct_blocks(space, (28,))[28]}
    assert {i["key"] for i in manifest["items"] if i["kind"] == "block"} == block_keys
    assert sum(i["kind"] == "subnet" for i in manifest["items"]) == 3
    latency = ROOT / "hwnas" / "latency"
    assert (bundle / "measure_bundle.py").read_bytes() == (latency / "device" / "measure_bundle.py").read_bytes()
    assert (bundle / "protocol.py").read_bytes() == (latency / "protocol.py").read_bytes()
    assert (bundle / "machine.py").read_bytes() == (ROOT / "hwnas" / "machine.py").read_bytes()

    # on the "device": a fresh interpreter that must not import hwnas
    results = tmp_path / "results.csv"
    code = (
        "import sys, runpy; sys.modules['hwnas'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(bundle / "measure_bundle.py"),
            str(bundle),
            "--out",
            str(results),
            "--rounds",
            "2",
            "--repeats",
            "2",
            "--warmup-s",
            "0",
            "--threads",
            "1",
            "--clock",
            "thread",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    measured = pd.read_csv(results)
    assert list(measured.columns) == ["key", "ms_p50", "ms_p90", "cv", "n"]
    assert (measured["ms_p50"] > 0).all() and (measured["n"] >= 4).all() and (measured["n"] % 2 == 0).all()

    tables = tmp_path / "tables"
    assert main(["profile", "--import", str(results), "--device", "pixel-test", "--out", str(tables), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lut = tables / "pixel-test" / "mbv3-tiny.csv"
    assert summary["lut"] == str(lut) and summary["calibration_subnets"] == 3
    table = load_lut(lut, space=space)
    assert set(table.rows) == block_keys
    by_key = measured.set_index("key")
    for key, stats in table.rows.items():
        assert stats.p50_ms == pytest.approx(by_key.loc[key, "ms_p50"], abs=1e-6)
    assert table.meta["device"] == "pixel-test" and table.meta["profile"]["threads"] == 1
    # the device script named its CPU as hwnas does here (this "device" is this machine): no other-CPU warning
    assert (table.meta["cpu"], table.meta["cpu_signature"]) == (cpu_model(), cpu_signature())
    with caplog.at_level(logging.WARNING):
        load_lut(lut, space=space)
    assert not [r for r in caplog.records if "was measured on" in r.getMessage()]
    subnets = table.meta["calibration"]["subnets"]
    assert len(subnets) == 3
    for point in subnets:
        arch = Arch.parse(point["arch"])
        assert point["measured_ms"] == pytest.approx(by_key.loc["subnet:" + point["arch"], "ms_p50"], abs=1e-6)
        assert point["raw_sum_ms"] == pytest.approx(raw_sum_ms(table, space, arch), abs=1e-5)
    assert LatencyPredictor(table, space).predict(Arch.parse(subnets[0]["arch"])) > 0


def test_import_rejects_incomplete_results(tmp_path, capsys):
    """Results of a bundle that holds one block only (a partial bundle, all its rows present) never become a table."""
    from device_bundle import restamp

    from hwnas.latency.lut import space_meta

    results = tmp_path / "results.csv"
    key = "28x28x1:conv_k3_c16_s1_hs"
    results.write_text(f"key,ms_p50,ms_p90,cv,n\n{key},0.01,0.01,0.0,4\n")
    space = get_space("mbv3-tiny")
    (tmp_path / "results.meta.json").write_text(
        json.dumps(
            {
                "kind": "hwnas-bundle-results",
                "bundle": {"id": "0123abcd", "mode": "blocks"},
                "space": space_meta(space),
                "resolutions": [28],
                "device": "x",
                "profile": {"name": "x"},
                "items": [{"key": key, "kind": "block"}],
            }
        )
    )
    restamp(results)
    assert main(["profile", "--import", str(results), "--device", "x", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "blocks missing" in err and err.count("\n") == 1 and not (tmp_path / "t").exists()
