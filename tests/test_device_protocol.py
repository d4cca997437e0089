"""One timing protocol: every bundle carries `hwnas.latency.protocol` itself, its device script times with it without
torch or hwnas, and an installed wheel (not only a source checkout) writes such bundles."""

import ast
import json
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
from device_bundle import RES, WITHOUT, device_env, make_bundle, write_profile

import hwnas.latency.harness as harness
import hwnas.latency.protocol as protocol
from hwnas.cli.main import main
from hwnas.latency import load_lut
from hwnas.space import distinct_blocks, get_space

ROOT = Path(__file__).parents[1]
SPACE = get_space("mbv3-tiny")
SETTINGS = {
    "warmup_s": 0.0,
    "warmup": 1,
    "rounds": 2,
    "repeats": 2,
    "max_cv": 10.0,
    "remeasure": 0,
    "calib_passes": 2,
    "clock": "thread",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("device")
    out = tmp / "bundle"
    make_bundle(out, write_profile(tmp))
    return out


def test_bundle_carries_the_protocol_the_harness_runs(bundle):
    assert Path(protocol.__file__) == ROOT / "hwnas" / "latency" / "protocol.py"
    assert (bundle / "protocol.py").read_bytes() == Path(protocol.__file__).read_bytes()
    for name in (
        "TimingStats",
        "PassRecord",
        "Protocol",
        "pass_speeds",
        "stats_from_passes",
        "split_half_p50",
        "run_protocol",
        "run_table_protocol",
        "MIN_ITEMS_PER_PASS_SPEED",
    ):
        assert getattr(harness, name) is getattr(protocol, name), name
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["protocol"] == SETTINGS and manifest["script"] == "measure_bundle.py"
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(Path(protocol.__file__).read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(ast.parse(Path(protocol.__file__).read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported - set(sys.stdlib_module_names) <= {"numpy", "tqdm"}  # tqdm: optional, a stderr counter without


def test_device_script_runs_without_torch_or_hwnas(bundle, tmp_path, capsys):
    probe = tmp_path / "probe.py"
    probe.write_text("import torch\n")
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT, "torch,hwnas", str(probe)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=device_env(),
        timeout=60,
    )
    assert proc.returncode != 0 and "torch is not installed on this device" in proc.stderr  # the blocker works

    results = tmp_path / "results.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT,
            "torch,hwnas",
            str(bundle / "measure_bundle.py"),
            str(bundle),
            "--out",
            str(results),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=device_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "results.meta.json").read_text())
    assert meta["protocol"] == SETTINGS  # the manifest's settings, no options given
    measured = pd.read_csv(results, dtype={"key": str}).set_index("key")
    subnets = measured.index.str.startswith("subnet:")
    assert subnets.sum() == 2
    assert (measured.loc[~subnets, "n"] == 2 * 2).all()  # rounds x repeats
    assert (measured.loc[subnets, "n"] == 2 * 2 + 2 * 3).all()  # + calib_passes whole-model passes of 3 runs

    tables = tmp_path / "tables"
    capsys.readouterr()
    assert main(["profile", "--import", str(results), "--device", "tiny-device", "--out", str(tables), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    table = load_lut(Path(summary["lut"]), space=SPACE)
    assert set(table.rows) == {s.key for s in distinct_blocks(SPACE, (RES,))[RES]}
    assert len(table.meta["calibration"]["subnets"]) == 2


def test_table_protocol_times_subnets_with_the_blocks_then_alone():
    now, calls = [0], []

    def model(key: str, ms: float):
        def run() -> None:
            calls.append(key)
            now[0] += int(ms * 1e6)

        return run

    blocks = {f"b{i}": model(f"b{i}", 1.0 + i) for i in range(8)}
    subnets = {"s0": model("s0", 20.0), "s1": model("s1", 30.0)}
    settings = protocol.Protocol(warmup_s=0.0, warmup=0, rounds=3, repeats=2, max_cv=1.0, remeasure=0, calib_passes=2)
    saved = []
    stats = protocol.run_table_protocol(
        blocks,
        subnets,
        settings,
        rng=random.Random(0),
        timer=lambda: now[0],
        checkpoint=lambda p: saved.append({k: list(v) for k, v in p.items()}),
    )
    assert set(calls[10:30]) == set(blocks) | set(subnets)  # after one warm-up sweep, one pass over all of them
    assert set(calls[-(2 + 2 * 4) :]) == set(subnets)  # then warm-up + 2 passes of 1 + 3 runs among the subnets
    assert all(stats[k].n == 3 * 2 for k in blocks) and all(stats[k].n == 3 * 2 + 2 * 3 for k in subnets)
    assert stats["b3"].p50_ms == pytest.approx(4.0) and stats["s1"].p50_ms == pytest.approx(30.0)
    assert {k: len(v) for k, v in saved[-1].items()} == {**{k: 3 for k in blocks}, "s0": 5, "s1": 5}
    calls.clear()  # resumed with every pass done: nothing runs, the same stats come back
    again = protocol.run_table_protocol(
        blocks, subnets, settings, rng=random.Random(1), timer=lambda: now[0], done=saved[-1]
    )
    assert calls == [] and again == stats


def test_installed_wheel_writes_bundles(tmp_path):
    def run(*cmd, **kw):
        proc = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, env=device_env(), timeout=300, **kw
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    src = tmp_path / "src"  # build from a copy: the build leaves build/ and *.egg-info behind
    shutil.copytree(ROOT / "hwnas", src / "hwnas", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("profiles", "latency_tables"):  # shipped as data files
        shutil.copytree(ROOT / folder, src / folder)
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
        "-w",
        tmp_path / "wheels",
        src,
    )
    wheel = next((tmp_path / "wheels").glob("hwnas-*.whl"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co. from the test's venv
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel)
    package = Path(run(python, "-c", "import hwnas; print(hwnas.__file__)", cwd=tmp_path).strip()).parent
    assert package.is_relative_to(site)  # the wheel's copy, not the checkout

    # the shipped profiles and tables come with the wheel: a named profile and the default table resolve outside a checkout
    shipped = run(
        python,
        "-c",
        "from hwnas.latency.profiles import data_root, load_profile; "
        "print(load_profile('cpu-ort-1t').name, data_root())",
        cwd=tmp_path,
    ).split()
    assert shipped[0] == "cpu-ort-1t" and Path(shipped[1]).is_relative_to(venv)
    assert (Path(shipped[1]) / "latency_tables" / "cpu-ort-1t" / "mbv3.csv").read_bytes() == (
        ROOT / "latency_tables" / "cpu-ort-1t" / "mbv3.csv"
    ).read_bytes()

    run(
        python,
        "-m",
        "hwnas",
        "bundle",
        "--device",
        write_profile(tmp_path),
        "--space",
        "mbv3-tiny",
        "--resolutions",
        RES,
        "--calib-subnets",
        "0",
        "--out",
        "bundle",
        cwd=tmp_path,
    )
    bundle = tmp_path / "bundle"
    for name, shipped in (("measure_bundle.py", "device/measure_bundle.py"), ("protocol.py", "protocol.py")):
        assert (bundle / name).read_bytes() == (package / "latency" / shipped).read_bytes()
        assert (bundle / name).read_bytes() == (ROOT / "hwnas" / "latency" / shipped).read_bytes()
    assert (bundle / "machine.py").read_bytes() == (package / "machine.py").read_bytes()
    run(
        python,
        bundle / "measure_bundle.py",
        bundle,
        "--out",
        "results.csv",
        "--rounds",
        "1",
        "--repeats",
        "1",
        cwd=tmp_path,
    )
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(distinct_blocks(SPACE, (RES,))[RES])
