"""`hwnas export`: a trained run + an arch → verified model.onnx (+ model.int8.onnx) and model_card.json.

`--device cpu|cuda|cuda:N` is the torch device (fine-tune, test accuracy, the float32 reference of the parity checks),
as for train, search and quickstart; `--target PROFILE` is the latency profile the exported files are timed on
(`--pte-target` for the .pte). A profile name given to `--device` is refused with a pointer to `--target`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from hwnas.cli.common import (
    add_threads_arg,
    apply_threads,
    check_out_dir,
    non_negative_int,
    positive_float,
    positive_int,
    unit_float,
)
from hwnas.cli.output import print_json, print_table
from hwnas.distributed import DEVICE_HELP
from hwnas.errors import HwnasError

if TYPE_CHECKING:
    from hwnas.export.pipeline import ExportResult


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="export a subnet to ONNX with parity checks, int8 and a model card")
    p.add_argument("--run", type=Path, required=True, metavar="RUN", help="training run directory (hwnas train --out)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", metavar="ARCH", help="canonical arch string")
    which.add_argument(
        "--search", type=Path, metavar="SEARCH_JSON", help="search.json from 'hwnas search' (its winner)"
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--finetune-epochs",
        type=non_negative_int,
        default=None,
        metavar="E",
        help="fine-tune with distillation from the supernet for E epochs (default 0; for a compound-scaled "
        "arch from 'hwnas search --strategy scale' 3, and at least 1: its accuracy comes from it)",
    )
    # defaults live in FinetuneConfig (not imported here: it pulls in torch, and --help stays fast)
    p.add_argument(
        "--finetune-lr",
        type=positive_float,
        default=None,
        metavar="LR",
        help="fine-tune learning rate, cosine to 0 (default 0.1)",
    )
    p.add_argument(
        "--kd-weight",
        type=unit_float,
        default=None,
        metavar="W",
        help="share of the fine-tune loss from the supernet's largest subnet's soft labels, 0..1; 0 skips "
        "the teacher (default 0.5)",
    )
    p.add_argument(
        "--format",
        choices=("onnx", "pte"),
        default="onnx",
        help="pte: also write model.pte for ExecuTorch + XNNPACK (Android/iOS), parity-checked and timed on "
        "--pte-target; needs pip install 'hwnas[mobile]' (default onnx)",
    )
    p.add_argument(
        "--pte-target",
        default="cpu-et-xnnpack-1t",
        metavar="PROFILE",
        help="executorch latency profile the .pte is timed on (default cpu-et-xnnpack-1t)",
    )
    p.add_argument("--int8", action="store_true", help="also write a static int8 model (onnxruntime, QDQ per-channel)")
    p.add_argument(
        "--target",
        default="cpu-ort-1t",
        metavar="PROFILE",
        help="latency profile the exported files are timed on (default cpu-ort-1t)",
    )
    p.add_argument(
        "--device",
        default=None,
        metavar="DEV",
        help=f"{DEVICE_HELP}; runs the fine-tune, test accuracy and the torch side of the parity checks (the "
        "latency profile is --target)",
    )
    p.add_argument(
        "--lut",
        type=Path,
        default=None,
        metavar="PATH",
        help="LUT for the predicted latency (default latency_tables/<target>/<space>.csv)",
    )
    p.add_argument(
        "--parity-images",
        type=positive_int,
        default=1000,
        metavar="N",
        help="test images for the ONNX-vs-torch check (default 1000)",
    )
    p.add_argument(
        "--test-images",
        type=positive_int,
        default=None,
        metavar="N",
        help="report accuracy on the first N test images only (default: the whole test split)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the run's dataset folder if not the one it recorded; required for runs from 'hwnas import-ofa' "
        "(an ImageNet-style folder with train/<class>/ and val/<class>/; test accuracy is on val/)",
    )
    add_threads_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs in DIR")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from hwnas.export.pipeline import check_torch_device
    from hwnas.space import Arch

    if args.device is not None:  # a latency profile name here gets the pointer to --target
        check_torch_device(args.device)
    apply_threads(args)
    if not args.run.is_dir():
        raise HwnasError(f"run directory {args.run} not found; pass the --out of 'hwnas train'")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise HwnasError(f"--data-dir {args.data_dir} is not a folder; pass the run's dataset folder")
    if args.lut is not None and not args.lut.is_file():
        raise HwnasError(f"LUT {args.lut} not found; run 'hwnas profile --device {args.target}' or omit --lut")
    from hwnas.distributed import resolve_device
    from hwnas.export.finetune import FinetuneConfig
    from hwnas.export.pipeline import (
        OUTPUT_FILES,
        SCALED_FINETUNE_EPOCHS,
        ExportConfig,
        export_run,
        read_scaled,
        read_search,
    )
    from hwnas.latency.profiles import load_profile

    load_profile(args.target)  # fail on a bad profile or a missing GPU before minutes of work
    device = str(resolve_device(args.device))
    if args.format == "pte":
        from hwnas.latency.executorch_runner import require_executorch

        require_executorch("--format pte")
        if load_profile(args.pte_target).runtime != "executorch":
            raise HwnasError(f"--pte-target {args.pte_target} is not an executorch profile; use cpu-et-xnnpack-1t")
    arch_text, lut, scaled = args.arch, args.lut, None
    if args.search is not None:
        arch_text, searched_lut = read_search(args.search)
        scaled = read_scaled(args.search)
        if lut is None and searched_lut is not None and searched_lut.parent.name == Path(args.target).stem:
            lut = searched_lut  # the table the search used, when it is for the profile we measure on
        elif (
            lut is None
            and searched_lut is not None
            and scaled is not None
            and json.loads(args.search.read_text()).get("device") == Path(args.target).stem
        ):
            lut = searched_lut  # a scaled arch is priced only by the table its extra rows were timed for
    arch = Arch.parse(arch_text)
    check_out_dir(args.out, force=args.force, produces=OUTPUT_FILES)
    given = {"lr": args.finetune_lr, "kd_weight": args.kd_weight}
    epochs = args.finetune_epochs if args.finetune_epochs is not None else SCALED_FINETUNE_EPOCHS if scaled else 0
    finetune = FinetuneConfig(epochs=epochs, **{k: v for k, v in given.items() if v is not None})
    cfg = ExportConfig(
        finetune=finetune,
        int8=args.int8,
        target=args.target,
        device=device,
        lut=lut,
        parity_images=args.parity_images,
        test_images=args.test_images,
        pte=args.format == "pte",
        pte_target=args.pte_target,
        data_dir=args.data_dir,
    )
    result = export_run(args.run, arch, args.out, cfg=cfg, progress=not args.json, scaled=scaled)
    if args.json:
        print_json(result.summary())
        return 0
    print_summary(result)
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_summary(r: ExportResult) -> None:
    """Human summary of an export."""
    print(f"arch {r.arch}")
    if (scaled := r.scaled) is not None:
        print(f"compound-scaled (phi {scaled['phi']}) from {scaled['base_arch']}: {scaled['accuracy_source']}")
    rows = [["fp32", str(r.onnx), f"{100 * r.test_acc:.2f}%", _fmt(r.predicted_ms, ".3f"), _fmt(r.measured_ms, ".3f")]]
    if r.int8_onnx is not None and r.int8_test_acc is not None:
        rows.append(["int8", str(r.int8_onnx), f"{100 * r.int8_test_acc:.2f}%", "", _fmt(r.int8_measured_ms, ".3f")])
    print_table(["model", "file", "test acc", "predicted ms", "measured ms"], rows)
    if (note := r.drift_note()) is not None:
        print(note)
    p = r.parity
    print(
        f"ONNX parity on {p.n_images} test images (torch float32 on {r.torch_device}): max |diff| "
        f"{p.max_abs_diff:.2e}, top-1 agreement {100 * p.top1_agreement:.1f}%; onnx.checker passed"
    )
    if (tradeoff := r.int8_tradeoff()) is not None:
        speedup, drop, worth = tradeoff
        verdict = "worth it" if worth else "NOT worth it on this profile: ship fp32"
        print(f"int8: {speedup:.2f}x the fp32 speed, accuracy drop {drop:.2f} pp -> {verdict}")
    if r.pte is not None:
        pp, pl = r.pte["parity"], r.pte["latency"]
        print(
            f".pte ({r.pte['runtime']}, XNNPACK): {r.out_dir / r.pte['file']['path']}; parity max |diff| "
            f"{pp['max_abs_diff']:.2e}, top-1 agreement {100 * pp['top1_agreement']:.1f}%; on {pl['device']}: "
            f"measured {_fmt(pl['measured_ms'], '.3f')} ms, predicted {_fmt(pl['predicted_ms'], '.3f')} ms"
        )
    print(f"model card: {r.card}")
