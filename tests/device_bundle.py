"""Shared by the device tests: a fast device profile, `hwnas bundle`, and running a bundle's script the way a device
does — a fresh interpreter in which hwnas (and, for the ONNX script, torch) cannot be imported."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from hwnas.cli.main import main

RES = 24  # mbv3-tiny's smallest resolution: the fastest bundles
PROFILE = """\
name: tiny-device
runtime: {runtime}
threads: 1
clock: thread
warmup_s: 0.0
warmup: 1
rounds: 2
repeats: 2
max_cv: 10.0
remeasure: 0
calib_subnets: {calib}
calib_passes: 2
remote: {remote}
"""
# Runs a script as __main__ in an interpreter where importing the BLOCKED packages fails, as on a device without them.
WITHOUT = """
import importlib.abc, runpy, sys
BLOCKED = tuple(sys.argv[1].split(","))
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on this device")
        return None
sys.meta_path.insert(0, Blocked())
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def device_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def write_profile(folder: Path, *, runtime: str = "onnxruntime", calib: int = 2, remote: bool = False) -> Path:
    path = folder / "tiny-device.yaml"
    path.write_text(PROFILE.format(runtime=runtime, calib=calib, remote=str(remote).lower()))
    return path


def make_bundle(out: Path, profile: Path, *args: str) -> dict:
    """`hwnas bundle` of mbv3-tiny at `RES` with `args`; returns the manifest."""
    argv = ["bundle", "--device", str(profile), "--space", "mbv3-tiny", "--resolutions", str(RES), "--out", str(out)]
    assert main([*argv, *args]) == 0
    return json.loads((out / "manifest.json").read_text())


def run_device_script(
    bundle: Path, results: Path, *args: str, script: str = "measure_bundle.py", blocked: str = "torch,hwnas"
) -> subprocess.CompletedProcess[str]:
    """The bundle's `script` in a fresh interpreter without `blocked` packages; results.csv to `results`."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, blocked, str(bundle / script), str(bundle), "--out", str(results), *args],
        capture_output=True,
        text=True,
        cwd=results.parent,
        env=device_env(),
        timeout=300,
    )


def restamp(results: Path) -> None:
    """Record results.csv's current digest in results.meta.json, as the device script does when it writes them: a
    test that changes a row this way simulates a device that wrote that row, not a file edited afterwards."""
    meta_path = results.with_name(results.name.removesuffix(".csv") + ".meta.json")
    meta = json.loads(meta_path.read_text())
    meta["results_sha256"] = hashlib.sha256(results.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
