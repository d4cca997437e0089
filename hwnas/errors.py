"""The one exception type for problems the user caused (bad input, missing files, infeasible budgets).

`hwnas.cli.main` turns it into a single ``hwnas: error: ...`` line and exit status 2. Anything else that escapes is a bug
and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["HwnasError"]


class HwnasError(Exception):
    """A user-caused problem. The message says what went wrong, where, and how to fix it."""
