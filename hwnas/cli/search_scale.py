"""`hwnas search --strategy scale`: compound scaling of a base arch to each budget (no accuracy scorer, no journal)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hwnas.cli.output import print_json
from hwnas.errors import HwnasError

__all__ = ["scale_search"]


def scale_search(
    args: argparse.Namespace, table: Any, space: Any, budgets: list[float], out_dir: Path, *, context: dict[str, Any]
) -> int:
    """Compound scaling of the base arch to each budget. Rows the LUT lacks are timed on demand on its device
    (`hwnas.latency.extra_rows`: same protocol as `hwnas profile`, put on the table's time base by re-timed reference
    rows) and cached next to the LUT in `<lut>.extra.csv`, so the next run measures nothing it has seen."""
    import os
    import sys

    from hwnas.atomic import atomic_write_json
    from hwnas.cli.common import parse_arch
    from hwnas.latency.extra_rows import (
        add_extra_rows,
        extra_rows_path,
        load_extra_rows,
        measure_extra_rows,
        with_extra_rows,
    )
    from hwnas.search.scale import ScaleConfig, scale_to_budget, scaled_to_meta
    from hwnas.space import blocks_of

    if args.arch is not None:
        arch = parse_arch(space, args.arch)
    else:
        prior = args.run / "search.json"
        if not prior.is_file():
            raise HwnasError(
                f"--strategy scale needs a base arch: pass --arch ARCH or run a search into {args.run} first"
            )
        arch = parse_arch(space, json.loads(prior.read_text())["arch"])
    cache_file = extra_rows_path(args.lut)
    cache = load_extra_rows(table, args.lut)
    batches: list[Any] = []

    def measure(specs: Any) -> Any:
        nonlocal cache
        if not os.access(cache_file.parent, os.W_OK):
            raise HwnasError(
                f"cannot cache measured rows next to LUT {args.lut} (folder not writable); copy the table "
                f"and its .meta.json to a writable folder and pass that with --lut"
            )
        batch = measure_extra_rows(
            table,
            specs,
            near=[b.key for b in blocks_of(space, arch)],
            runner=_row_runner(table),
            progress=sys.stderr.isatty(),
        )
        cache = add_extra_rows(table, args.lut, batch)
        batches.append(batch)
        return batch.rows

    cfg = ScaleConfig()
    entries: list[dict[str, Any]] = []
    for budget in budgets:
        done = len(batches)
        result = scale_to_budget(with_extra_rows(table, cache), space, arch, budget_ms=budget, cfg=cfg, measure=measure)
        scaled = result.best
        needed = {b.key for s in result.tried for b in blocks_of(s.space, s.arch)} - set(table.rows)
        fresh = {key for b in batches[done:] for key in b.rows}
        measured, reused = len(fresh), len(needed - fresh)
        entries.append(
            {
                "arch": str(scaled.arch),
                "predicted_ms": round(scaled.predicted_ms, 6),
                "accuracy": None,
                "budget_ms": budget,
                "evaluated": 0,
                "seconds": round(result.seconds, 3),
                "phi": scaled.phi,
                "width": scaled.space.width,
                "base_arch": str(arch),
                "rows_measured": measured,
                "rows_reused": reused,
                "time_base_factors": [round(b.factor, 4) for b in batches[done:]],
                "scaled": {**scaled_to_meta(scaled, cfg), "predicted_ms": round(scaled.predicted_ms, 6)},
                "tried": [
                    {
                        "phi": s.phi,
                        "width": s.space.width,
                        "resolution": s.arch.resolution,
                        "depths": [len(x) for x in s.arch.stages],
                        "predicted_ms": round(s.predicted_ms, 6),
                    }
                    for s in result.tried
                ],
                "note": "scaled arch is outside the trained supernet: its accuracy is unknown until it is "
                "fine-tuned ('hwnas export --search' does that)",
            }
        )
    payload = {
        "schema": "hwnas.search/1",
        **entries[0],
        "strategy": "scale",
        **context,
        "extra_rows": str(cache_file),
        "budgets": entries,
    }
    atomic_write_json(out_dir / "search.json", payload)
    if args.json:
        keys = (
            "arch",
            "predicted_ms",
            "accuracy",
            "budget_ms",
            "evaluated",
            "seconds",
            "phi",
            "width",
            "rows_measured",
            "rows_reused",
            "time_base_factors",
        )
        summary = [{**{k: e[k] for k in keys}, "extra_rows": str(cache_file)} for e in entries]
        print_json(summary[0] if len(summary) == 1 else summary)
    else:
        for e in entries:
            print(
                f"budget {e['budget_ms']:g} ms -> {e['arch']} (phi {e['phi']}, width {e['width']}, "
                f"predicted {e['predicted_ms']:.4f} ms; accuracy unknown until fine-tuned)"
            )
            if e["rows_measured"]:
                factors = ", ".join(f"x{f:.3f}" for f in e["time_base_factors"])
                print(
                    f"  timed {e['rows_measured']} new LUT rows on {table.device} (put on the table's time base "
                    f"by {factors}); reused {e['rows_reused']} cached rows"
                )
            elif e["rows_reused"]:
                print(f"  all {e['rows_reused']} rows beyond the LUT came from the cache")
        print(f"wrote {out_dir / 'search.json'}; extra rows in {cache_file}")
    return 0


def _row_runner(table: Any) -> Any:
    """The runner for the table's profile; int8 profiles quantize each block like 'hwnas export --int8' (None: the
    profile's default runner)."""
    from hwnas.latency.extra_rows import table_profile

    profile = table_profile(table)
    if profile.dtype != "int8":
        return None
    from hwnas.export.int8 import quantize_onnx_bytes
    from hwnas.latency.runtime import make_runner

    return make_runner(profile, quantize=quantize_onnx_bytes)
