"""Where hwnas keeps what it can rebuild (lowered .pte programs, the compiled depthwise kernel): one root for all.

`$HWNAS_CACHE_DIR` when set, else `$XDG_CACHE_HOME/hwnas`, else `~/.cache/hwnas`; each user of the cache takes a
subfolder of it (`pte/`, `native/`)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """The folder hwnas caches under (not created here)."""
    if os.environ.get("HWNAS_CACHE_DIR"):
        return Path(os.environ["HWNAS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hwnas"
