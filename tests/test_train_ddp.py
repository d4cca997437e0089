"""2-process DDP on CPU (gloo) through torchrun and the real CLI: trains, ranks stay in step, only rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hwnas.train import CHECKPOINT, load_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_torchrun_two_ranks_gloo(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "hwnas",
        "train",
        "--dataset",
        "synthetic",
        "--mode",
        "bignas",
        "--out",
        str(out),
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--width",
        "0.5",
        "--threads",
        "1",
        "--json",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)  # exactly one JSON document: only rank 0 prints
    assert summary["steps"] == 3
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    assert config["torch_device"] == summary["torch_device"] == "cpu"  # CUDA hidden: each rank on the CPU, gloo
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv"]  # no temp files
    run = load_run(out)
    assert run.step == 3
    payload = torch.load(out / CHECKPOINT, weights_only=True)
    # the optimizer stepped with the all-reduced gradients: momentum buffers exist for the trained parameters
    assert any(state for state in payload["optimizer"]["state"].values())
