import json
import subprocess
import sys

import pytest
from archs import TINY_ARCHS

from hwnas.cli import main


def test_space_show_json(capsys):
    assert main(["space", "show", "--space", "mbv3-tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["space"] == "mbv3-tiny" and info["distinct_blocks_per_resolution"] == 93


def test_arch_sample_is_canonical_and_seeded(capsys):
    assert main(["arch", "sample", "--space", "mbv3", "--seed", "3"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["arch", "sample", "--space", "mbv3", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == first
    assert main(["arch", "info", first, "--space", "mbv3"]) == 0


def test_arch_info_json(capsys):
    assert main(["arch", "info", TINY_ARCHS[1], "--space", "mbv3-tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) >= {"arch", "resolution", "macs", "params", "blocks"}
    assert info["macs"] == sum(b["macs"] for b in info["blocks"]) and info["params"] > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["space", "show", "--space", "nope"],
        ["arch", "info", "r224/k3e3"],
        ["arch", "info", "garbage"],
        ["arch", "info", TINY_ARCHS[1], "--space", "mbv3"],
        ["arch", "sample", "--width", "-1"],
        ["nonexistent-command"],
    ],
)
def test_bad_input_one_line_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "hwnas", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwnas: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
