"""`hwnas space show`, `hwnas arch sample`, `hwnas arch info`.

Command modules import torch-heavy layers inside handlers so that `--help` and input errors answer in well under a second.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from hwnas.cli.common import add_space_args, parse_arch, space_from_args
from hwnas.cli.output import print_json, print_table
from hwnas.space import blocks_of, distinct_blocks, largest, sample, smallest, space_hash, space_size


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    space = sub.add_parser("space", help="inspect search spaces")
    space_sub = space.add_subparsers(dest="space_command", metavar="SUBCOMMAND")
    show = space_sub.add_parser("show", help="print a space's choices, size and extreme archs")
    add_space_args(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_space_show)

    arch = sub.add_parser("arch", help="sample and inspect architectures")
    arch_sub = arch.add_subparsers(dest="arch_command", metavar="SUBCOMMAND")
    smp = arch_sub.add_parser("sample", help="print one random canonical arch string")
    add_space_args(smp)
    smp.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    smp.set_defaults(handler=_arch_sample)
    info = arch_sub.add_parser("info", help="MACs, params and the block table of an arch")
    info.add_argument("arch", metavar="ARCH", help="canonical arch string, e.g. from 'hwnas arch sample'")
    add_space_args(info)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=_arch_info)


def _space_show(args: argparse.Namespace) -> int:
    space = space_from_args(args)
    per_res = distinct_blocks(space)
    info = {
        "space": space.name,
        "hash": space_hash(space),
        "width": space.width,
        "in_channels": space.in_channels,
        "num_classes": space.num_classes,
        "resolutions": list(space.resolutions),
        "stages": [
            {
                "out_ch": s.out_ch,
                "stride": s.stride,
                "act": s.act,
                "se": s.se,
                "depths": list(s.depths),
                "kernels": list(s.kernels),
                "expands": list(s.expands),
            }
            for s in space.stages
        ],
        "archs": space_size(space),
        "distinct_blocks_per_resolution": len(next(iter(per_res.values()))),
        "smallest": str(smallest(space)),
        "largest": str(largest(space)),
    }
    if args.json:
        print_json(info)
        return 0
    print(
        f"space {space.name} (hash {info['hash']}, width {space.width}, in_channels {space.in_channels}, "
        f"classes {space.num_classes})"
    )
    print(
        f"resolutions {list(space.resolutions)}; stem 3x3 s{space.stem_stride} {space.stem_ch}ch; "
        f"first block k3 e1 {space.first_ch}ch; head x{space.head_expand} -> {space.head_feat_ch}"
    )
    print_table(
        ["stage", "out_ch", "stride", "act", "se", "depths", "kernels", "expands"],
        [
            [
                i + 1,
                s.out_ch,
                s.stride,
                s.act,
                "yes" if s.se else "no",
                list(s.depths),
                list(s.kernels),
                list(s.expands),
            ]
            for i, s in enumerate(space.stages)
        ],
    )
    print(f"{info['archs']:.3e} archs; {info['distinct_blocks_per_resolution']} distinct blocks per resolution")
    print(f"smallest {info['smallest']}")
    print(f"largest  {info['largest']}")
    return 0


def _arch_sample(args: argparse.Namespace) -> int:
    space = space_from_args(args)
    print(sample(space, random.Random(args.seed)))
    return 0


def _arch_info(args: argparse.Namespace) -> int:
    space = space_from_args(args)
    arch = parse_arch(space, args.arch)
    from hwnas.blocks import arch_macs, arch_params, block_macs, block_params  # torch: only once the input is valid

    blocks = blocks_of(space, arch)
    rows: list[dict[str, Any]] = [
        {"key": b.key, "in_hw": b.in_hw, "out_hw": b.out_hw, "macs": block_macs(b), "params": block_params(b)}
        for b in blocks
    ]
    macs, params = arch_macs(space, arch), arch_params(space, arch)
    payload = {
        "arch": str(arch),
        "space": space.name,
        "resolution": arch.resolution,
        "depths": list(arch.depths),
        "macs": macs,
        "params": params,
        "blocks": rows,
    }
    if args.json:
        print_json(payload)
        return 0
    print(f"arch {arch}")
    print(f"space {space.name}, resolution {arch.resolution}, depths {list(arch.depths)}")
    print(f"MACs {macs / 1e6:.2f} M, params {params / 1e6:.3f} M")
    print_table(
        ["#", "block", "in", "out", "MMACs", "params"],
        [[i, r["key"], r["in_hw"], r["out_hw"], f"{r['macs'] / 1e6:.3f}", r["params"]] for i, r in enumerate(rows)],
    )
    return 0
