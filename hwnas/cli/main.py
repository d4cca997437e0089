"""Entry point: parser construction, dispatch, and the error contract (exit 0 / 2 / 130; tracebacks only for bugs)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from hwnas import __version__
from hwnas.errors import HwnasError

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)

# Subcommand modules, in help order. Each exposes `register(subparsers)`.
_COMMAND_MODULES = (
    "hwnas.cli.cmd_space",
    "hwnas.cli.cmd_latency",
    "hwnas.cli.cmd_train",
    "hwnas.cli.cmd_import",
    "hwnas.cli.cmd_search",
    "hwnas.cli.cmd_export",
    "hwnas.cli.cmd_report",
    "hwnas.cli.cmd_quickstart",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors become `HwnasError` so they print as one line and exit 2 like every other user error."""

    def error(self, message: str) -> NoReturn:
        raise HwnasError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hwnas", description="Hardware-aware mobile model search.")
    parser.add_argument("--version", action="version", version=f"hwnas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command group not written yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def _log_library_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Python warnings raised inside a command (torch / onnx / executorch deprecations and the like) go to the debug log:
    they are about those libraries, not about the user's input, so they never add lines to an error or a result;
    `hwnas -v` shows them."""
    seen = set()
    for w in caught:
        text = f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})"
        if text not in seen:
            seen.add(text)
            log.debug("library warning: %s", text)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr, force=True
        )
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return 2
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                return int(args.handler(args) or 0)
            finally:
                _log_library_warnings(caught)
    except HwnasError as exc:
        message = " ".join(str(exc).split())  # always exactly one line
        print(f"hwnas: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        detail = " ".join(str(exc).split())  # a command may say what was saved and how to resume, on the same line
        print(f"hwnas: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` etc.: exit quietly, like a Unix tool.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
