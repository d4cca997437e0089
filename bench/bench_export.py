#!/usr/bin/env python3
"""Export benchmark: ONNX parity, onnxruntime vs torch eager at batch 1, and int8 vs fp32 (speed and accuracy).

Speed (all 1 intra-op thread, batch 1, interleaved round-robin passes, median per item):
  torch eager (inference_mode)  vs  onnxruntime fp32  vs  onnxruntime int8 (static QDQ, per-channel)
  on mbv3-tiny archs at 24-32 px (the Fashion-MNIST deployment), on OFA-mbv3 archs at 224 px (where int8 should pay)
  and, as the peer for int8, on torchvision's MobileNetV3-Large at 224 px exported and quantized the same way.
  The mbv3 weights are random: speed does not depend on them; accuracy is not reported for them.
Parity and int8 accuracy need trained weights: with --run RUN (default runs/quickstart/run when present) the arch of
the run's search.json (or the space's largest/smallest) is exported through the full pipeline on real Fashion-MNIST.

    python bench/bench_export.py [--quick] [--run RUN] [--out bench/results/export.json]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hwnas.atomic import atomic_write_json
from hwnas.blocks import arch_macs, build_model
from hwnas.export.int8 import quantize_int8
from hwnas.export.onnx import INPUT_NAME, export_onnx, ort_session
from hwnas.machine import machine_info
from hwnas.space import Arch, get_space, largest, smallest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from archs import MBV3_ARCHS, TINY_ARCHS  # noqa: E402
from results_paths import repo_relative  # noqa: E402

log = logging.getLogger("bench_export")


def interleaved_ms(
    fns: dict[str, Callable[[], object]], *, rounds: int, repeats: int, warmup_s: float
) -> dict[str, float]:
    """Median ms per callable over `rounds` passes in shuffled order (drift hits every item alike).

    Timed with the calling thread's CPU clock (`time.thread_time_ns`), like the cpu-ort-1t profile: torch and
    onnxruntime both run single-threaded on the calling thread here, so the numbers are what an idle core would show
    even while other jobs share this 2-core machine.
    """
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            fn()
            for _ in range(repeats):
                t0 = time.thread_time_ns()
                fn()
                samples[name].append((time.thread_time_ns() - t0) / 1e6)
    return {k: statistics.median(v) for k, v in samples.items()}


def timed_row(
    model: torch.nn.Module, shape: tuple[int, ...], fp32: Path, tmp: Path, *, rounds: int, repeats: int, calib_n: int
) -> dict[str, float]:
    """torch eager vs ORT fp32 (`fp32`, exported from `model`) vs ORT int8 of it, interleaved in one session."""
    calib = np.random.default_rng(0).standard_normal((calib_n, *shape[1:])).astype(np.float32)
    int8 = quantize_int8(fp32, tmp / "m.int8.onnx", calib, batch_size=1)
    x_t = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x_n = x_t.numpy()
    s32, s8 = ort_session(fp32, threads=1), ort_session(int8, threads=1)
    in32, in8 = s32.get_inputs()[0].name, s8.get_inputs()[0].name

    def eager() -> object:
        with torch.inference_mode():
            return model(x_t)

    ms = interleaved_ms(
        {
            "torch_eager": eager,
            "ort_fp32": lambda: s32.run(None, {in32: x_n}),
            "ort_int8": lambda: s8.run(None, {in8: x_n}),
        },
        rounds=rounds,
        repeats=repeats,
        warmup_s=1.0,
    )
    return {
        "torch_eager_ms": round(ms["torch_eager"], 4),
        "ort_fp32_ms": round(ms["ort_fp32"], 4),
        "ort_int8_ms": round(ms["ort_int8"], 4),
        "ort_vs_eager_speedup": round(ms["torch_eager"] / ms["ort_fp32"], 2),
        "int8_speedup": round(ms["ort_fp32"] / ms["ort_int8"], 3),
        "fp32_kib": round(fp32.stat().st_size / 1024, 1),
        "int8_kib": round(int8.stat().st_size / 1024, 1),
    }


def speed_row(space_name: str, arch: Arch, tmp: Path, *, rounds: int, repeats: int, calib_n: int) -> dict[str, object]:
    space = get_space(space_name)
    model = build_model(space, arch).eval()
    shape = (1, space.in_channels, arch.resolution, arch.resolution)
    fp32 = export_onnx(model, tmp / "m.onnx", space=space, arch=arch)
    row = {
        "space": space_name,
        "arch": str(arch),
        "resolution": arch.resolution,
        "macs": arch_macs(space, arch),
        **timed_row(model, shape, fp32, tmp, rounds=rounds, repeats=repeats, calib_n=calib_n),
    }
    log.info(
        "%-9s %-8s eager %.3f ms  ort %.3f ms (%.1fx)  int8 %.3f ms (%.2fx)",
        space_name,
        f"r{arch.resolution}",
        row["torch_eager_ms"],
        row["ort_fp32_ms"],
        row["ort_vs_eager_speedup"],
        row["ort_int8_ms"],
        row["int8_speedup"],
    )
    return row


def torchvision_row(tmp: Path, *, rounds: int, repeats: int, calib_n: int) -> dict[str, object]:
    """The peer for int8: torchvision's MobileNetV3-Large at 224 (random weights), exported and quantized the same way."""
    import torchvision

    model = torchvision.models.mobilenet_v3_large().eval()
    shape = (1, 3, 224, 224)
    fp32 = tmp / "tv.onnx"
    torch.onnx.export(
        model,
        torch.randn(shape),
        fp32,
        dynamo=False,
        opset_version=17,
        input_names=[INPUT_NAME],
        output_names=["logits"],
    )
    row = {
        "space": "torchvision",
        "arch": "mobilenet_v3_large",
        "resolution": 224,
        **timed_row(model, shape, fp32, tmp, rounds=rounds, repeats=repeats, calib_n=calib_n),
    }
    log.info(
        "torchvision mobilenet_v3_large r224 ort %.3f ms  int8 %.3f ms (%.2fx)",
        row["ort_fp32_ms"],
        row["ort_int8_ms"],
        row["int8_speedup"],
    )
    return row


def trained_section(run: Path, tmp: Path, *, quick: bool, tables: Path) -> dict[str, object]:
    """Full export pipeline on a trained run: parity on 1,000 real test images, fp32 vs int8 accuracy and latency
    (predicted by the committed table when it was built on this CPU, else by one profiled here into `tables`)."""
    from hwnas.export.pipeline import ExportConfig, arch_from_search, export_run
    from hwnas.latency import load_profile
    from hwnas.quickstart import ensure_lut
    from hwnas.train.checkpoint import load_run

    search = run.parent / "search.json"
    arch_text = arch_from_search(search) if search.is_file() else None
    space = load_run(run).space
    lut, committed = ensure_lut(
        space, load_profile("cpu-ort-1t"), committed_dir=REPO / "latency_tables", out_dir=tables, progress=False
    )
    cfg = ExportConfig(int8=True, parity_images=1000, lut=lut)
    rows = []
    archs = [Arch.parse(arch_text)] if arch_text else []
    if not quick:
        archs += [smallest(space), largest(space, resolution=min(space.resolutions))]
    for i, arch in enumerate(archs):
        result = export_run(run, arch, tmp / f"export{i}", cfg=cfg)
        rows.append(result.summary())
    return {"run": repo_relative(run), "lut": repo_relative(lut), "lut_committed": committed, "exports": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer archs and timing rounds")
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "quickstart" / "run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "export.json")
    parser.add_argument(
        "--tables",
        type=Path,
        default=REPO / "bench" / "results" / "tables" / "export",
        help="where a LUT is profiled (and kept with the results) when the committed one was built on another CPU",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    rounds, repeats = (3, 10) if args.quick else (5, 20)

    tiny, mbv3 = get_space("mbv3-tiny"), get_space("mbv3")
    plan = [("mbv3-tiny", smallest(tiny)), ("mbv3-tiny", Arch.parse(TINY_ARCHS[1])), ("mbv3-tiny", largest(tiny))]
    plan += [("mbv3", largest(mbv3, resolution=224)), ("mbv3", Arch.parse("r224/" + MBV3_ARCHS[1].split("/", 1)[1]))]
    if not args.quick:
        plan += [("mbv3", smallest(mbv3, resolution=224)), ("mbv3", Arch.parse(MBV3_ARCHS[1]))]
    with tempfile.TemporaryDirectory(prefix="hwnas-bench-export-") as tmp_dir:
        tmp = Path(tmp_dir)
        speed = [speed_row(name, arch, tmp, rounds=rounds, repeats=repeats, calib_n=16) for name, arch in plan]
        speed.append(torchvision_row(tmp, rounds=rounds, repeats=repeats, calib_n=16))
        trained = None
        if (args.run / "checkpoint.pt").is_file():
            trained = trained_section(args.run, tmp, quick=args.quick, tables=args.tables)
        else:
            log.info("no trained run at %s: parity/int8-accuracy section skipped (run 'make demo' first)", args.run)
    result = {
        "benchmark": "export",
        "machine": machine_info(),
        "protocol": {
            "threads": 1,
            "batch": 1,
            "rounds": rounds,
            "repeats": repeats,
            "clock": "thread CPU time",
            "int8": "onnxruntime static QDQ, per-channel, MinMax calibration",
        },
        "speed": speed,
        "trained": trained,
    }
    atomic_write_json(args.out, result)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
