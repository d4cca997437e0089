"""`hwnas import-ofa`: a published Once-for-All MobileNetV3 supernet (+ accuracy predictor) as an hwnas run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli.common import check_out_dir
from hwnas.cli.output import print_json

_OUTPUTS = ("checkpoint.pt", "config.json")


def _width(text: str) -> float:
    if text not in ("1.0", "1.2", "1"):
        raise argparse.ArgumentTypeError(f"OFA publishes widths 1.0 and 1.2, got {text!r}")
    return float(text)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "import-ofa",
        help="turn OFA's published MobileNetV3 supernet into a run folder (no training)",
        description="Reads ofa_mbv3_d234_e346_k357_w1.0 / _w1.2 (the file OFA publishes, or one saved by OFA's code) and "
        "writes RUN/checkpoint.pt + config.json for 'hwnas search' and 'hwnas export'. hwnas never downloads: "
        "pass the local path of the file you downloaded from the OFA project.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT", help="OFA MobileNetV3 supernet checkpoint (.pth)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument(
        "--width",
        type=_width,
        default=None,
        help="1.0 or 1.2; checked against the checkpoint (default: read from the checkpoint)",
    )
    p.add_argument(
        "--predictor",
        type=Path,
        default=None,
        metavar="ACC.pth",
        help="OFA's accuracy predictor for this supernet: 'hwnas search --scorer predictor' then needs no data",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=_import_ofa)


def _import_ofa(args: argparse.Namespace) -> int:
    from hwnas.ofa.run import import_ofa

    out = check_out_dir(args.out, force=args.force, produces=_OUTPUTS)
    result = import_ofa(args.checkpoint, out, width=args.width, predictor=args.predictor)
    summary = result.summary()
    if args.json:
        print_json(summary)
    else:
        predictor = f", accuracy predictor {summary['predictor']}" if summary["predictor"] else ""
        print(
            f"imported OFA mbv3 width {summary['width']:.1f} ({summary['parameters'] / 1e6:.2f} M parameters{predictor}) "
            f"in {summary['seconds']:.1f} s"
        )
        print(f"wrote {out / 'checkpoint.pt'}, config.json")
    return 0
