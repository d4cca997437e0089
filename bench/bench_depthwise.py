"""Depthwise backward on CPU: hwnas's C weight-gradient kernel vs oneDNN, per shape and in whole BigNAS sandwich steps.

Two measurements, interleaved round by round so drift on this shared machine hits both sides alike:

1. kernel: the weight gradient alone for mbv3-tiny's depthwise shapes (batch 64, channels_last, k 3/5/7, stride 1/2),
   `native_grad_weight` vs oneDNN's `convolution_backward`; the max abs difference between the two is recorded too.
2. sandwich: one BigNAS training step (largest + 2 random + smallest subnet, inplace distillation) of the mbv3-tiny
   supernet at 32 px, batch 64, with `HWNAS_DEPTHWISE_BACKWARD` = native vs onednn, the same arch sequence for both.

    flock /tmp/hwnas-heavy.lock .venv/bin/python bench/bench_depthwise.py [--quick]

Writes bench/results/depthwise.json.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import torch

from hwnas.atomic import atomic_write_json
from hwnas.machine import machine_info
from hwnas.supernet import depthwise

REPO = Path(__file__).resolve().parents[1]
BATCH = 64
# (channels, spatial, kernel, stride): what mbv3-tiny's stages see at 32 px
SHAPES = [
    (96, 16, 3, 1),
    (96, 16, 7, 1),
    (144, 8, 5, 1),
    (144, 16, 7, 2),
    (192, 8, 7, 1),
    (288, 4, 7, 1),
    (384, 4, 5, 1),
    (384, 2, 7, 1),
]


def _use(backend: str) -> None:
    os.environ["HWNAS_DEPTHWISE_BACKWARD"] = backend
    depthwise._library.cache_clear()


def _time(fn, repeats: int) -> float:
    fn()
    best = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return statistics.median(best) * 1e3


def bench_kernels(rounds: int, repeats: int) -> list[dict]:
    rows = []
    for c, hw, k, stride in SHAPES:
        x = torch.randn(BATCH, c, hw, hw).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, 1, k, k)
        pad = (k // 2, k // 2)
        out_hw = (hw + 2 * pad[0] - k) // stride + 1
        g = torch.randn(BATCH, c, out_hw, out_hw).contiguous(memory_format=torch.channels_last)
        _use("native")
        native = depthwise.native_grad_weight(x, g, (k, k), stride=stride, padding=pad)
        ref = depthwise.grad_weight_reference(x, g, w, stride=stride, padding=pad)
        if native is None:
            raise SystemExit("hwnas: error: the native depthwise kernel could not be built here (no C compiler?)")
        times: dict[str, list[float]] = {"native": [], "onednn": []}
        for _ in range(rounds):
            times["native"].append(
                _time(lambda: depthwise.native_grad_weight(x, g, (k, k), stride=stride, padding=pad), repeats)
            )
            times["onednn"].append(
                _time(lambda: depthwise.grad_weight_reference(x, g, w, stride=stride, padding=pad), repeats)
            )
        med = {name: statistics.median(v) for name, v in times.items()}
        rows.append(
            {
                "channels": c,
                "spatial": hw,
                "kernel": k,
                "stride": stride,
                "native_ms": round(med["native"], 3),
                "onednn_ms": round(med["onednn"], 3),
                "speedup": round(med["onednn"] / med["native"], 2),
                "max_abs_diff": float((native - ref).abs().max()),
                "ref_max_abs": float(ref.abs().max()),
            }
        )
        print(
            f"k{k} s{stride} {c}x{hw}x{hw}: native {med['native']:.2f} ms  oneDNN {med['onednn']:.2f} ms  "
            f"×{med['onednn'] / med['native']:.2f}",
            flush=True,
        )
    return rows


def bench_sandwich(rounds: int, steps: int) -> dict:
    from hwnas.space import get_space, largest, sample, smallest, with_io
    from hwnas.supernet import Supernet

    torch.manual_seed(0)
    space = with_io(get_space("mbv3-tiny"), in_channels=1, num_classes=10)
    net = Supernet(space).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(BATCH, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))
    rng = random.Random(0)
    big, small = largest(space, resolution=32), smallest(space, resolution=32)

    def step(archs) -> None:
        opt.zero_grad(set_to_none=True)
        teacher = net(x, big)
        loss = torch.nn.functional.cross_entropy(teacher, y)
        loss.backward()
        soft = teacher.detach().softmax(-1)
        for arch in archs:
            out = net(x, arch)
            torch.nn.functional.cross_entropy(out, soft).backward()
        opt.step()

    seqs = [[sample(space, rng, resolution=32), sample(space, rng, resolution=32), small] for _ in range(steps)]
    ms: dict[str, list[float]] = {"native": [], "onednn": []}
    for r in range(rounds):
        for backend in ("native", "onednn") if r % 2 == 0 else ("onednn", "native"):
            _use(backend)
            step(seqs[0])  # warm
            t = time.perf_counter()
            for archs in seqs:
                step(archs)
            ms[backend].append((time.perf_counter() - t) / steps * 1e3)
        print(
            f"round {r + 1}/{rounds}: native {ms['native'][-1]:.0f} ms/step  oneDNN {ms['onednn'][-1]:.0f} ms/step",
            flush=True,
        )
    med = {name: statistics.median(v) for name, v in ms.items()}
    return {
        "native_ms_per_step": round(med["native"], 1),
        "onednn_ms_per_step": round(med["onednn"], 1),
        "speedup": round(med["onednn"] / med["native"], 3),
        "rounds": rounds,
        "steps_per_round": steps,
        "per_round_ms": {k: [round(v, 1) for v in vs] for k, vs in ms.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/depthwise.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    kernels = bench_kernels(rounds=3 if args.quick else 5, repeats=5 if args.quick else 10)
    sandwich = bench_sandwich(rounds=2 if args.quick else 6, steps=3 if args.quick else 8)
    print(
        f"sandwich step: native {sandwich['native_ms_per_step']} ms, oneDNN {sandwich['onednn_ms_per_step']} ms, "
        f"×{sandwich['speedup']}"
    )
    atomic_write_json(
        args.out,
        {
            "bench": "depthwise_backward",
            "threads": 2,
            "batch": BATCH,
            "kernels": kernels,
            "sandwich_mbv3_tiny_32px": sandwich,
            "machine": machine_info(),
        },
    )


if __name__ == "__main__":
    main()
