"""The command line. The only place that reads argv, configures logging, prints for users or exits.

Each subcommand group lives in its own module (`cmd_*.py`) exposing `register(subparsers)`; `main` wires them up and turns
`HwnasError` into one ``hwnas: error: ...`` line with exit status 2.
"""

from hwnas.cli.main import main

__all__ = ["main"]
