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
    _add_cache_args(prof)
    prof.add_argument(
        "--import",
        dest="import_csv",
        type=Path,
        metavar="CSV",
        help="results.csv from measure_bundle.py (with results.meta.json beside it)",
    )
    prof.add_argument(
        "--from-table",
        type=Path,
        metavar="REF_CSV",
        help="with --import of a --whole-subnets bundle: fit a few-shot table from this reference table of the "
        "same space (another device or runtime) and the bundle's whole-subnet timings",
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
    val.add_argument("--subnets", type=positive_int, help="held-out subnets (default 100)")
    val.add_argument("--seed", type=int, help="sampling seed (default 1)")
    val.add_argument("--resolution", type=positive_int, help="only this resolution (default: all of the LUT's)")
    val.add_argument("--plot", type=Path, help="scatter PNG (default <lut>.fidelity.png next to the table)")
    val.add_argument("--records", type=Path, help="also write per-subnet measurements to this CSV")
    val.add_argument(
        "--references",
        type=non_negative_int,
        help="calibration subnets re-timed in every chunk to measure the machine's drift since the "
        "table was built (default 6; 0: no drift-corrected numbers)",
    )
    val.add_argument(
        "--passes",
        type=positive_int,
        help="interleaved timing passes per subnet (default 3x the profile's rounds); more passes, a more "
        "repeatable ground truth (see retest_kendall_tau)",
    )
    _add_cache_args(val)
    val.add_argument(
        "--stored",
        action="store_true",
        help="show the fidelity report the device measured (stored by 'hwnas profile --import' of a bundle made "
        "with --validate) instead of timing here; the default for tables of remote devices",
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
    bun.add_argument(
        "--validate",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="also N held-out whole subnets (+ drift references), timed after the table: the import reports the "
        "table's fidelity on the device and stores it in the table's metadata",
    )
    bun.add_argument("--validate-seed", type=int, help="sampling seed of the held-out subnets (default 1)")
    bun.add_argument(
        "--whole-subnets",
        type=positive_int,
        metavar="N",
        help="no blocks, only N whole subnets (for devices that cannot time single blocks); import with "
        "'hwnas profile --import results.csv --from-table REF.csv'",
    )
    bun.add_argument("--out", type=Path, required=True, help="bundle directory")
    _add_cache_args(bun)
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


def _add_cache_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--cache-dir",
        type=Path,
        help="executorch profiles: where lowered .pte programs are kept for timing (default $HWNAS_CACHE_DIR/pte, "
        "else ~/.cache/hwnas/pte)",
    )
    group.add_argument(
        "--no-cache", action="store_true", help="executorch profiles: lower every program again, keep none on disk"
    )


def _pte_cache_dir(args: argparse.Namespace, profile) -> Path | None:  # type: ignore[no-untyped-def]
    """Where an executorch profile's lowered programs live (see hwnas.latency.pte_cache); None with --no-cache or
    for other runtimes, which refuse the cache flags (they lower nothing)."""
    from hwnas.cache import cache_root

    if profile.runtime != "executorch":
        if args.cache_dir is not None or args.no_cache:
            flag = "--cache-dir" if args.cache_dir is not None else "--no-cache"
            raise HwnasError(
                f"{flag} applies to executorch profiles (lowered .pte programs); {profile.name} uses "
                f"{profile.runtime}: drop {flag}"
            )
        return None
    if args.no_cache:
        return None
    if args.cache_dir is not None:
        return Path(args.cache_dir)
    return cache_root() / "pte"


def _local_runner(profile, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The runner 'profile' and 'validate' time with: int8 ORT quantizes, executorch lowers in worker processes
    into the .pte cache; None: the profile's plain runner."""
    cache_dir = _pte_cache_dir(args, profile)
    if profile.runtime != "executorch":
        return _int8_runner(profile)
    from hwnas.latency.executorch_runner import ExecuTorchRunner

    return ExecuTorchRunner(profile, cache_dir=cache_dir)


def _table_profile(table):  # type: ignore[no-untyped-def]
    from hwnas.latency.profiles import profile_from_dict

    return profile_from_dict(table.meta.get("profile"), where=f"LUT {table.source} metadata")


def _profile(args: argparse.Namespace) -> int:
    from hwnas.latency import load_profile
    from hwnas.latency.lut import lut_path

    if args.import_csv is not None and (args.cache_dir is not None or args.no_cache):
        raise HwnasError("--import reads timings and lowers nothing: drop --cache-dir / --no-cache")
    fidelity = None
    if args.from_table is not None and args.import_csv is None:
        raise HwnasError("--from-table fits a table from a bundle's results: give them with --import results.csv")
    if args.import_csv is not None:
        from hwnas.latency.bundle import import_results

        options = (
            ("--resolutions", args.resolutions),
            ("--calib-subnets", args.calib_subnets),
            ("--fresh", args.fresh),
        )
        for flag, value in options:
            if value not in (None, False):
                raise HwnasError(
                    f"{flag} applies when a table is built here or bundled; --import takes the bundle's: drop {flag}"
                )

        imported = import_results(args.import_csv, device=args.device, out_dir=args.out, from_table=args.from_table)
        table, path, fidelity = imported.table, imported.path, imported.fidelity
    else:
        from hwnas.latency.profiler import profile_space

        space = space_from_args(args)
        profile = load_profile(args.device)
        if profile.remote:
            raise HwnasError(
                f"profile {profile.name} is a remote device; use 'hwnas bundle --device {profile.name}' "
                "and import the results with 'hwnas profile --import'"
            )
        runner = _local_runner(profile, args)  # a misplaced flag fails before anything is written
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
            runner=runner,
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
        "lowering": table.meta.get("lowering"),
    }
    fewshot = table.meta.get("fewshot")
    if args.import_csv is not None:
        keys = ("reference", "subnets", "model", "factors", "depthwise_ms_per_mmac", "cv")
        summary["fewshot"] = None if fewshot is None else {k: fewshot[k] for k in keys}
        summary["fidelity"] = None if fidelity is None else fidelity.summary()
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {path} ({summary['rows']} blocks, resolutions {summary['resolutions']}"
            + (f", {summary['seconds']} s)" if summary["seconds"] is not None else ")")
        )
        low = table.meta.get("lowering")
        if low:
            where = f" in {low['cache_dir']}" if low["cache_dir"] else ""
            print(
                f"programs: all {low['programs']} found lowered{where}"
                if not low["lowered"]
                else f"programs: {low['lowered']} of {low['programs']} lowered in {low['seconds']} s by "
                f"{low['workers']} processes ({low['cpu_seconds_per_program']} CPU s each), "
                f"{low['cache_hits']} found lowered{where}"
            )
        if cal.get("subnets"):
            print(
                f"calibration on {summary['calibration_subnets']} subnets: raw sum MAPE {cal['raw_mape']:.1%} -> "
                f"calibrated {cal['fit_mape']:.1%} (in-sample); check held-out with 'hwnas latency validate --lut {path}'"
            )
        if fewshot:
            print(
                f"few-shot from {fewshot['reference']['lut']} and {fewshot['subnets']} whole subnets: model "
                f"{fewshot['model']}, leave-one-out MAPE {fewshot['cv']['mape']:.1%}"
            )
        if fidelity is not None:
            print(f"fidelity measured on the device, {fidelity.subnets} held-out subnets (stored in the table's meta):")
            _print_fidelity(fidelity)
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


# the options of 'latency validate' that time subnets here: given with a stored report, they would be ignored
MEASURING_FLAGS = (
    ("subnets", "--subnets"),
    ("seed", "--seed"),
    ("resolution", "--resolution"),
    ("references", "--references"),
    ("passes", "--passes"),
    ("cache_dir", "--cache-dir"),
    ("no_cache", "--no-cache"),
)


def _stored_report(args: argparse.Namespace, table, profile):  # type: ignore[no-untyped-def]
    """The device's own fidelity report stored in the table's meta (shown with --stored, or for a remote device's
    table, which cannot be timed here), and a line saying where it comes from; (None, None) to time here."""
    from hwnas.latency.fidelity import FidelityReport

    if not (args.stored or profile.remote):
        return None, None
    stored = table.meta.get("device_fidelity")
    if not stored:
        why = "it was measured on a remote device and cannot be timed here, and it" if not args.stored else "it"
        raise HwnasError(
            f"LUT {args.lut} ({table.device}): {why} holds no device fidelity report; make its bundle with "
            "'hwnas bundle ... --validate N' and import the device's results"
        )
    given = [flag for name, flag in MEASURING_FLAGS if getattr(args, name, None) not in (None, False)]
    if given:
        raise HwnasError(
            f"{given[0]} sets how subnets are timed here, but the report shown is the one stored from the device "
            f"({'--stored' if args.stored else 'remote profile ' + profile.name}); drop {given[0]}"
        )
    origin = (
        f"stored report of the device (bundle {stored.get('bundle_id')}, timed {stored.get('date')} on "
        f"{(stored.get('machine') or {}).get('platform', 'the device')}), not re-timed here"
    )
    return FidelityReport.from_meta(stored["report"]), origin


def _validate(args: argparse.Namespace) -> int:
    from hwnas.latency.validate import plot_fidelity, validate_lut

    table, _ = _load(args.lut)
    profile = _table_profile(table)
    plot = args.plot or args.lut.with_name(args.lut.name.removesuffix(".csv") + ".fidelity.png")
    report, origin = _stored_report(args, table, profile)
    if report is None:
        report = validate_lut(
            table,
            subnets=100 if args.subnets is None else args.subnets,
            seed=1 if args.seed is None else args.seed,
            resolution=args.resolution,
            progress=sys.stderr.isatty(),
            runner=_local_runner(profile, args),
            references=6 if args.references is None else args.references,
            passes=args.passes,
        )
    where = "measured on the device" if origin else "held-out subnets"
    plot_fidelity(report, plot, title=f"{table.space_name} on {table.device}: {report.subnets} {where}")
    if args.records is not None:
        import pandas as pd

        from hwnas.atomic import atomic_path

        with atomic_path(args.records) as tmp:
            pd.DataFrame(list(report.records)).to_csv(tmp, index=False, float_format="%.6f")
    if args.json:
        payload = report.summary()
        if origin:  # only then: where the stored report was measured
            stored = table.meta["device_fidelity"]
            payload["stored"] = {k: stored.get(k) for k in ("source", "bundle_id", "date", "machine", "validate_seed")}
        print_json(payload)
        return 0
    if origin:
        print(f"{table.device}: {origin}")
    print(
        f"{report.subnets} held-out subnets of {table.space_name} on {table.device} ({report.seconds} s); "
        f"scatter: {plot}"
    )
    _print_fidelity(report)
    return 0


def _print_fidelity(report) -> None:  # type: ignore[no-untyped-def]
    """The fidelity table of a report (validate here, or a device's from a bundle): LUT, raw sum, FLOPs, x speed."""
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


def _bundle(args: argparse.Namespace) -> int:
    from hwnas.latency import load_profile
    from hwnas.latency.bundle import write_bundle

    space = space_from_args(args)
    profile = load_profile(args.device)
    if args.validate_seed is not None and not args.validate:
        raise HwnasError("--validate-seed draws the held-out subnets of --validate N: give --validate N too")
    cache_dir = _pte_cache_dir(args, profile)
    out = check_out_dir(args.out, force=args.force, produces=("manifest.json",))
    manifest = write_bundle(
        space,
        profile,
        out,
        resolutions=_resolutions(space, args.resolutions),
        calib_subnets=_calib(args.calib_subnets),
        validate=args.validate,
        validate_seed=1 if args.validate_seed is None else args.validate_seed,
        whole_subnets=args.whole_subnets,
        cache_dir=cache_dir,
        progress=sys.stderr.isatty(),
    )
    kinds = [i["kind"] for i in manifest["items"]]
    n_sub, n_held = kinds.count("subnet"), kinds.count("heldout")
    what = (
        f"{kinds.count('block')} blocks + {n_sub} calibration subnets"
        if manifest["mode"] == "blocks"
        else f"{n_sub} whole subnets"
    )
    held = f" + {n_held} held-out subnets and {kinds.count('reference')} drift references" if n_held else ""
    print(f"wrote {out} (bundle {manifest['bundle_id']}): {what}{held} for {profile.name}")
    print(f"on the device: python3 {manifest.get('script', 'measure_bundle.py')} {out} --out results.csv")
    from_table = " --from-table REF.csv" if manifest["mode"] == "whole-subnets" else ""
    print(f"then: hwnas profile --import results.csv --device {profile.name}{from_table}")
    return 0
