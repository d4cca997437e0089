"""`hwnas quickstart` (= `make demo`): latency table → supernet training → budgeted search → verified export.

The table is profiled for, and the exported files timed on, this machine's CPU (`cpu-ort-1t`); training, candidate
scoring and the export's fine-tune run on `--device` (cpu, cuda or cuda:N; default cuda when available).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hwnas.cli.common import add_device_arg, add_threads_arg, check_out_dir, non_negative_int, positive_int
from hwnas.cli.output import print_json, print_table
from hwnas.errors import HwnasError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("quickstart", help="the whole pipeline on this machine and Fashion-MNIST, in minutes")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/quickstart"),
        metavar="DIR",
        help="output directory (default runs/quickstart)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=300,
        metavar="N",
        help="supernet training steps of 64 images (default 300, enough for the search to rank subnets)",
    )
    p.add_argument(
        "--evaluations", type=positive_int, default=40, metavar="N", help="measured search evaluations (default 40)"
    )
    p.add_argument(
        "--finetune-epochs",
        type=non_negative_int,
        default=2,
        metavar="E",
        help="KD fine-tune epochs of the winner before export (default 2; 0 ships the extracted weights)",
    )
    p.add_argument(
        "--lut",
        type=Path,
        default=None,
        metavar="PATH",
        help="use this latency table as it is (default: profile this machine now, about half a minute)",
    )
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 export")
    add_threads_arg(p, default_help="2 on an idle 2-core machine, 1 when other jobs keep it busy")
    add_device_arg(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--force", action="store_true", help="overwrite an earlier quickstart in DIR")
    p.set_defaults(handler=_quickstart)


def _quickstart(args: argparse.Namespace) -> int:
    from hwnas.distributed import resolve_device
    from hwnas.quickstart import QuickstartConfig, run_quickstart

    resolve_device(args.device)  # a missing GPU is a one-line error before anything is checked or written
    check_out_dir(args.out, force=args.force, produces=("search.json", "export/model_card.json", "run/checkpoint.pt"))
    started = time.monotonic()
    if args.lut is not None and not args.lut.is_file():
        raise HwnasError(f"LUT {args.lut} not found; omit --lut to use or build the table for this machine")
    cfg = QuickstartConfig(
        out=args.out,
        max_steps=args.steps,
        evaluations=args.evaluations,
        int8=args.int8,
        finetune_epochs=args.finetune_epochs,
        lut=args.lut,
        threads=args.threads,
        device=args.device,
    )
    r = run_quickstart(cfg, progress=True)  # bars on stderr even when logged to a file: the run takes minutes
    if args.json:
        print_json(r.summary())
        return 0
    e = r.export
    total = time.monotonic() - started
    print()
    print(
        f"hwnas quickstart: {cfg.space} on Fashion-MNIST, torch on {r.torch_device}, latency on {cfg.target}, "
        f"{total / 60:.1f} min"
    )
    print(f"latency table  {r.lut} ({'given' if r.lut_reused else 'profiled now'})")
    print(
        f"budget         {r.budget_ms:.4f} ms (predicted subnet latencies span {r.range_ms[0]:.4f}-{r.range_ms[1]:.4f} ms)"
    )
    print(f"winner         {e.arch}")
    print()
    err = "" if not (e.predicted_ms and e.measured_ms) else f"{100 * (e.measured_ms / e.predicted_ms - 1):+.1f}%"
    rows = [["fp32", f"{100 * e.test_acc:.2f}%", _ms(e.predicted_ms), _ms(e.measured_ms), err, e.onnx]]
    if e.int8_onnx is not None and e.int8_test_acc is not None:
        rows.append(["int8", f"{100 * e.int8_test_acc:.2f}%", "", _ms(e.int8_measured_ms), "", e.int8_onnx])
    print_table(["model", "test acc", "predicted ms", "measured ms", "error", "file"], rows)
    print()
    if (note := e.drift_note()) is not None:
        print(note)
    p = e.parity
    print(
        f"ONNX vs torch on {p.n_images} test images: max |diff| {p.max_abs_diff:.1e}, top-1 agreement "
        f"{100 * p.top1_agreement:.1f}%; onnx.checker passed"
    )
    if (tradeoff := e.int8_tradeoff()) is not None:
        speedup, drop, worth = tradeoff
        print(
            f"int8: {speedup:.2f}x the fp32 speed, accuracy drop {drop:.2f} pp -> "
            + ("worth it on this profile" if worth else "not worth it on this profile: ship the fp32 model")
        )
    print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in r.seconds.items()))
    print(f"files: {r.lut}, {r.run_dir}/, {r.search_json}, {e.onnx}, {e.card}")
    print(f"try it without hwnas: python tools/classify_onnx.py {e.card}")
    return 0


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
