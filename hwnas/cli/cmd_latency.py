"""`hwnas profile`, `hwnas latency predict|validate`, `hwnas bundle`: build, use, check and port latency tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwnas.cli.common import add_space_args, check_out_dir, non_negative_int, parse_arch, positive_int, space_from_args
from hwnas.cli.output import print_json, print_table
from hwnas.errors import HwnasError

DEFAULT_TABLES = Path("latency_tables")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    prof = sub.add_parser(
        "profile",
        help="build a latency table (LUT) for a device profile",
        description="Time every distinct block of a space (and calibration subnets) on a device "
        "profile and write <out>/<device>/<space>.csv + .meta.json. Rerunning after an "
        "interruption resumes; --import turns measure_bundle.py results into a LUT.",
    )
    prof.add_argument(
        "--device",
        default="cpu-ort-1t",
        help="profile name in profiles/ or a .yaml path (default cpu-ort-1t); with --import: the "
        "device name for the new table",
    )
    add_space_args(prof)
    prof.add_argument("--resolutions", type=positive_int, nargs="+", help="subset of the space's resolutions")
    prof.add_argument("--out", type=Path, default=DEFAULT_TABLES, help="tables directory (default latency_tables/)")
    prof.add_argument("--calib-subnets", type=int, default=None, help="calibration subnets (default: the profile's)")
    prof.add_argument("--fresh", action="store_true", help="ignore a partial profile from an interrupted run")
    prof.add_argument(
        "--import",
        dest="import_csv",
        type=Path,
        metavar="CSV",
        help="results.csv from measure_bundle.py (with results.meta.json beside it)",
    )
    prof.add_argument("--json", action="store_true", help="machine-readable summary")
    prof.set_defaults(handler=_profile)

    lat = sub.add_parser("latency", help="predict and validate latency with a LUT")
    lat_sub = lat.add_subparsers(dest="latency_command", metavar="SUBCOMMAND")
    pred = lat_sub.add_parser("predict", help="calibrated latency of one arch")
    pred.add_argument("arch", metavar="ARCH", help="canonical arch string")
    pred.add_argument("--lut", type=Path, required=True, help="latency_tables/<device>/<space>.csv")
    pred.add_argument("--json", action="store_true", help='print {"arch", "latency_ms"}')
    pred.set_defaults(handler=_predict)
    val = lat_sub.add_parser(
        "validate",
        help="measure held-out subnets whole and report the LUT's fidelity",
        description="Shares (within_*) and relative errors (mape, max_err) are fractions 0-1.",
    )
    val.add_argument("--lut", type=Path, required=True, help="latency_tables/<device>/<space>.csv")
    val.add_argument("--subnets", type=positive_int, default=100, help="held-out subnets (default 100)")
    val.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    val.add_argument("--resolution", type=positive_int, help="only this resolution (default: all of the LUT's)")
    val.add_argument("--plot", type=Path, help="scatter PNG (default <lut>.fidelity.png next to the table)")
    val.add_argument("--records", type=Path, help="also write per-subnet measurements to this CSV")
    val.add_argument(
        "--references",
        type=non_negative_int,
        default=6,
        help="calibration subnets re-timed in every chunk to measure the machine's drift since the "
        "table was built (default 6; 0: no drift-corrected numbers)",
    )
    val.add_argument(
        "--passes",
        type=positive_int,
        help="interleaved timing passes per subnet (default 3x the profile's rounds); more passes, a more "
        "repeatable ground truth (see retest_kendall_tau)",
    )
    val.add_argument("--json", action="store_true", help="machine-readable summary")
    val.set_defaults(handler=_validate)

    bun = sub.add_parser(
        "bundle",
        help="export a space's blocks for timing on another device",
        description="Writes block ONNX files, calibration subnets, manifest.json, measure_bundle.py "
        "and protocol.py (the timing protocol 'hwnas profile' runs; needs only numpy + "
        "onnxruntime). Import the results with 'hwnas profile --import'.",
    )
    bun.add_argument(
        "--device", default="cpu-ort-1t", help="profile name or .yaml path (see profiles/remote-template.yaml)"
    )
    add_space_args(bun)
    bun.add_argument("--resolutions", type=positive_int, nargs="+", help="subset of the space's resolutions")
    bun.add_argument("--calib-subnets", type=int, default=None, help="calibration subnets (default: the profile's)")
    bun.add_argument("--out", type=Path, required=True, help="bundle directory")
    bun.add_argument("--force", action="store_true", help="overwrite an existing bundle")
    bun.set_defaults(handler=_bundle)


def _resolutions(space, values):  # type: ignore[no-untyped-def]
    from hwnas.latency.profiler import check_resolutions

    return check_resolutions(space, values)


def _calib(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise HwnasError(f"--calib-subnets must be >= 0, got {value}")
    return value


def _int8_runner(profile):  # type: ignore[no-untyped-def]
    """For int8 profiles (dtype: int8): an ORT runner that quantizes each block/subnet like 'hwnas export --int8'."""
    if profile.dtype != "int8":
        return None
    from hwnas.export.int8 import quantize_onnx_bytes
    from hwnas.latency.runtime import make_runner

    return make_runner(profile, quantize=quantize_onnx_bytes)


def _table_profile(table):  # type: ignore[no-untyped-def]
    from hwnas.latency.profiles import profile_from_dict

    return profile_from_dict(table.meta.get("profile"), where=f"LUT {table.source} metadata")


def _profile(args: argparse.Namespace) -> int:
    from hwnas.latency import load_profile
    from hwnas.latency.lut import lut_path

    if args.import_csv is not None:
        from hwnas.latency.bundle import import_results

        table, path = import_results(args.import_csv, device=args.device, out_dir=args.out)
    else:
        from hwnas.latency.profiler import profile_space

        space = space_from_args(args)
        profile = load_profile(args.device)
        if profile.remote:
            raise HwnasError(
                f"profile {profile.name} is a remote device; use 'hwnas bundle --device {profile.name}' "
                "and import the results with 'hwnas profile --import'"
            )
        path = lut_path(args.out, profile.name, space)
        check_out_dir(path.parent, force=True)
        table = profile_space(
            space,
            profile,
            out_path=path,
            resolutions=_resolutions(space, args.resolutions),
            calib_subnets=_calib(args.calib_subnets),
            resume=not args.fresh,
            progress=sys.stderr.isatty(),
            runner=_int8_runner(profile),
        )
    cal = table.meta.get("calibration") or {}
    summary = {
        "lut": str(path),
        "device": table.device,
        "space": table.space_name,
        "rows": len(table),
        "resolutions": list(table.resolutions),
        "calibration_subnets": len(cal.get("subnets", [])),
        "calibration_fit_mape": cal.get("fit_mape"),
        "raw_sum_mape": cal.get("raw_mape"),
        "seconds": table.meta.get("build_seconds"),
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {path} ({summary['rows']} blocks, resolutions {summary['resolutions']}"
            + (f", {summary['seconds']} s)" if summary["seconds"] is not None else ")")
        )
        if cal.get("subnets"):
            print(
                f"calibration on {summary['calibration_subnets']} subnets: raw sum MAPE {cal['raw_mape']:.1%} -> "
                f"calibrated {cal['fit_mape']:.1%} (in-sample); check held-out with 'hwnas latency validate --lut {path}'"
            )
    return 0


def _load(path: Path):  # type: ignore[no-untyped-def]
    from hwnas.latency import load_lut

    table = load_lut(path)
    return table, table.space()


def _predict(args: argparse.Namespace) -> int:
    from hwnas.latency import predict_ms

    table, space = _load(args.lut)
    arch = parse_arch(space, args.arch)
    ms = predict_ms(table, space, arch)
    if args.json:
        print_json({"arch": str(arch), "latency_ms": ms})
    else:
        print(f"{ms:.3f} ms  {arch}  ({table.device}, {table.space_name})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from hwnas.latency.validate import plot_fidelity, validate_lut

    table, _ = _load(args.lut)
    plot = args.plot or args.lut.with_name(args.lut.name.removesuffix(".csv") + ".fidelity.png")
    report = validate_lut(
        table,
        subnets=args.subnets,
        seed=args.seed,
        resolution=args.resolution,
        progress=sys.stderr.isatty(),
        runner=_int8_runner(_table_profile(table)),
        references=args.references,
        passes=args.passes,
    )
    plot_fidelity(report, plot, title=f"{table.space_name} on {table.device}: {report.subnets} held-out subnets")
    if args.records is not None:
        import pandas as pd

        from hwnas.atomic import atomic_path

        with atomic_path(args.records) as tmp:
            pd.DataFrame(list(report.records)).to_csv(tmp, index=False, float_format="%.6f")
    if args.json:
        print_json(report.summary())
        return 0
    print(
        f"{report.subnets} held-out subnets of {table.space_name} on {table.device} ({report.seconds} s); "
        f"scatter: {plot}"
    )
    rows = [
        [
            name,
            f"{f.within_5pct:.1%}",
            f"{f.within_10pct:.1%}",
            f"{f.mape:.2%}",
            f"{f.max_err:.1%}",
            f"{f.kendall_tau:.3f}",
        ]
        for name, f in (
            ("LUT (calibrated)", report.lut),
            ("LUT raw sum", report.raw),
            ("FLOPs (calibrated)", report.flops),
        )
    ]
    dc = report.drift_corrected
    if dc is not None:
        speed = "/".join(f"{s:.2f}" for s in dc.speed_factors)
        rows += [
            [
                f"{name} x speed",
                f"{f.within_5pct:.1%}",
                f"{f.within_10pct:.1%}",
                f"{f.mape:.2%}",
                f"{f.max_err:.1%}",
                f"{f.kendall_tau:.3f}",
            ]
            for name, f in (("LUT (calibrated)", dc.lut), ("FLOPs (calibrated)", dc.flops))
        ]
    print_table(["predictor", "within 5%", "within 10%", "MAPE", "max err", "Kendall tau"], rows)
    if dc is not None:
        print(
            f"machine speed vs the table's build, per chunk ({len(dc.references)} reference subnets): x{speed} "
            "(> 1: slower now); 'x speed' rows scale predictions by it"
        )
    tau = dc.retest_kendall_tau if dc is not None else report.retest_kendall_tau
    print(
        f"measurement repeatability: Kendall tau {tau:.3f} between each subnet's even and odd passes (a LUT tau "
        "near it is limited by the measurement, not the table; raise --passes)"
    )
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from hwnas.latency import load_profile
    from hwnas.latency.bundle import write_bundle

    space = space_from_args(args)
    profile = load_profile(args.device)
    out = check_out_dir(args.out, force=args.force, produces=("manifest.json",))
    manifest = write_bundle(
        space,
        profile,
        out,
        resolutions=_resolutions(space, args.resolutions),
        calib_subnets=_calib(args.calib_subnets),
        progress=sys.stderr.isatty(),
    )
    n_sub = sum(1 for i in manifest["items"] if i["kind"] == "subnet")
    print(f"wrote {out}: {len(manifest['items']) - n_sub} blocks + {n_sub} calibration subnets for {profile.name}")
    print(f"on the device: python3 {manifest.get('script', 'measure_bundle.py')} {out} --out results.csv")
    print(f"then: hwnas profile --import results.csv --device {profile.name}")
    return 0
