"""Crash-safe file writes: write a temp file in the destination directory, fsync, then `os.replace`.

A reader (or a crash) therefore sees either the old file or the complete new one — never a half-written LUT, checkpoint,
search.json or ONNX model.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from hwnas.errors import HwnasError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_write_json"]


def _file_mode() -> int:
    """What `open(path, "w")` would give: 0o666 minus the umask (mkstemp's temp files are 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it is fsynced and renamed onto `path`, on error it is removed.

    For writers that want a filename (torch.save, onnx.save, DataFrame.to_csv, savefig).
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    except OSError as exc:
        raise HwnasError(f"cannot write {dest}: {exc.strerror}; choose a writable location") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write(path: str | os.PathLike[str], mode: str, writer: Callable[[IO[Any]], object]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, mode) as fh:
            writer(fh)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return _write(path, "w", lambda fh: fh.write(text))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return _write(path, "wb", lambda fh: fh.write(data))


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
