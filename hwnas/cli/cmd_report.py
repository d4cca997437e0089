"""`hwnas report RUN`: draw the plots of a run folder from the files earlier commands wrote."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="draw the Pareto plot (PNG) of a run's search results")
    p.add_argument("run", type=Path, metavar="RUN", help="run folder holding search.json and candidates.csv")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from hwnas.errors import HwnasError
    from hwnas.report import plot_pareto

    if not args.run.is_dir():
        raise HwnasError(f"run folder {args.run} not found")
    if (args.run / "alpha_history.json").is_file():  # architecture-search run (hwnas train --mode fbnet|...)
        from hwnas.report import plot_alpha

        print(f"wrote {plot_alpha(args.run)}")
        if not (args.run / "search.json").is_file():
            return 0
    path = plot_pareto(args.run)
    print(f"wrote {path}")
    return 0
