"""Supernet training throughput: hwnas `Supernet` vs PyPI `ofa`'s `OFAMobileNetV3`, side by side in one process.

Same space (OFA MobileNetV3: k{3,5,7} e{3,4,6} d{2,3,4}, 10 classes), 32 px, batch 64, SGD (momentum 0.9), cross-entropy,
torch threads 2. Cases: a random subnet every step (the same arch sequence for both), the largest, the smallest. ofa
runs as shipped (NCHW) and with channels_last applied by hand (model and input); hwnas runs channels_last (its default).
Rounds alternate between the implementations and the median per (impl, case) is reported, so drift on this shared
machine hits all of them alike.

    .venv/bin/pip install --no-deps ofa==0.1.0   # bench only
    flock /tmp/hwnas-heavy.lock .venv/bin/python bench/bench_train.py [--quick]

Writes bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from hwnas.atomic import atomic_write_json
from hwnas.machine import machine_info
from hwnas.space import Arch, get_space, largest, sample, smallest, with_io
from hwnas.supernet import Supernet

REPO = Path(__file__).resolve().parents[1]
RES, BATCH, CLASSES = 32, 64, 10


def _ofa_net() -> torch.nn.Module:
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    return OFAMobileNetV3(
        n_classes=CLASSES,
        dropout_rate=0.0,
        width_mult=1.0,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )


def _ofa_setting(arch: Arch) -> dict[str, list[int]]:
    """hwnas Arch → OFA's set_active_subnet arguments (layers beyond a stage's depth are unused; filled with 3)."""
    ks, es = [], []
    for stage in arch.stages:
        padded = list(stage) + [stage[-1]] * (4 - len(stage))
        ks += [c.kernel for c in padded]
        es += [c.expand for c in padded]
    return {"ks": ks, "e": es, "d": [len(s) for s in arch.stages]}


def _runner(impl: str) -> Callable[[Arch], float]:
    """A function that runs one SGD step on `arch` and returns its wall time in seconds."""
    torch.manual_seed(0)
    channels_last = impl != "ofa"
    if impl.startswith("ofa"):
        net = _ofa_net()
    else:
        net = Supernet(with_io(get_space("mbv3"), in_channels=3, num_classes=CLASSES))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, RES, RES, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (BATCH,), generator=gen)

    def step(arch: Arch) -> float:
        t0 = time.perf_counter()
        if impl.startswith("ofa"):
            net.set_active_subnet(**_ofa_setting(arch))  # type: ignore[operator]
            out = net(x)
        else:
            out = net(x, arch)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(out, y).backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (smoke run)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rounds, steps = (2, 3) if args.quick else (args.rounds, args.steps)
    torch.set_num_threads(args.threads)
    space = get_space("mbv3")
    rng = random.Random(0)
    cases = {
        "random": [sample(space, rng) for _ in range(rounds * steps)],
        "largest": [largest(space)] * (rounds * steps),
        "smallest": [smallest(space)] * (rounds * steps),
    }
    impls = ("hwnas", "ofa", "ofa_channels_last")
    runners = {impl: _runner(impl) for impl in impls}
    rates: dict[str, dict[str, list[float]]] = {c: {i: [] for i in impls} for c in cases}
    for case, archs in cases.items():
        for impl in impls:  # warm-up: allocator, mkldnn primitives
            for arch in archs[:2]:
                runners[impl](arch)
        for r in range(rounds):
            chunk = archs[r * steps : (r + 1) * steps]
            for impl in impls if r % 2 == 0 else impls[::-1]:
                seconds = sum(runners[impl](arch) for arch in chunk)
                rates[case][impl].append(BATCH * len(chunk) / seconds)
    results = {}
    for case in cases:
        med = {impl: statistics.median(v) for impl, v in rates[case].items()}
        results[case] = {
            "img_per_s": {k: round(v, 1) for k, v in med.items()},
            "rounds": {k: [round(x, 1) for x in v] for k, v in rates[case].items()},
            "speedup_vs_ofa": round(med["hwnas"] / med["ofa"], 2),
            "speedup_vs_ofa_channels_last": round(med["hwnas"] / med["ofa_channels_last"], 2),
        }
    payload = {
        "benchmark": "supernet training throughput, OFA MobileNetV3 space, 32 px, batch 64, SGD, CE",
        "setup": {
            "resolution_px": RES,
            "batch": BATCH,
            "classes": CLASSES,
            "threads": args.threads,
            "rounds": rounds,
            "steps_per_round": steps,
            "note": "input resolution fixed at 32 px for every "
            "arch (the arch's own resolution is ignored); the random case uses one seeded arch sequence for all",
        },
        "results": results,
        "machine": machine_info(),
    }
    out = REPO / "bench" / "results" / "train_throughput.json"
    atomic_write_json(out, payload)
    for case, r in results.items():
        print(case, r["img_per_s"], "x ofa", r["speedup_vs_ofa"], "x ofa+cl", r["speedup_vs_ofa_channels_last"])


if __name__ == "__main__":
    main()
