"""The search journal: every measured candidate, appended the moment it is measured, so a search stopped by Ctrl-C or
`kill -9` resumes (`hwnas search --resume`) without measuring any candidate a second time.

Why an append-only JSONL log rather than an atomic rewrite every N candidates: a measurement (extract + BN recalibration +
val accuracy) costs 0.1-1 s, so appending one fsynced line per measurement is free next to it and loses at most the one
measurement in flight, while a rewrite every N loses up to N, and rewriting on every measurement grows quadratically.
A single writer that appends whole lines can only be torn at the *end*: `read_journal` drops a torn last line and refuses
damage anywhere else, because that is not what a crash leaves. The header line is written atomically (`hwnas.atomic`),
so even a kill during start-up leaves a loadable file.

The header names the search the journal belongs to (`identity`: run checkpoint and LUT digests, strategy, seed, budgets,
evaluation settings). The strategies are seeded and deterministic given the scores, so replaying the journal's
accuracies through the same strategy retraces the interrupted run step for step and ends with the same winner. A journal
of any other search is refused rather than reused: its accuracies may belong to another checkpoint or scorer setting, and
even where they do not, `--resume` promises to finish *that* search, so a silent change of budget or seed is a mistake to
report, not to absorb.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_write_text
from hwnas.errors import HwnasError

__all__ = ["JOURNAL", "JOURNAL_SCHEMA", "append_measurement", "read_journal", "resume_journal", "write_journal"]

log = logging.getLogger(__name__)

JOURNAL = "search.journal.jsonl"
JOURNAL_SCHEMA = "hwnas.search-journal/1"


def _line(arch: str, accuracy: float) -> str:
    return json.dumps({"arch": arch, "accuracy": accuracy}) + "\n"


def write_journal(path: Path, identity: Mapping[str, Any], measured: Mapping[str, float]) -> None:
    """(Re)write the journal atomically: the header plus `measured` (empty for a fresh search, the kept entries on resume;
    rewriting on resume also cuts off a torn last line, so the next append starts on a line of its own)."""
    header = json.dumps({"schema": JOURNAL_SCHEMA, "search": dict(identity)}) + "\n"
    atomic_write_text(path, header + "".join(_line(a, acc) for a, acc in measured.items()))


def append_measurement(path: Path, arch: str, accuracy: float) -> None:
    """Append one measured candidate, flushed and fsynced before returning: nothing sits in a buffer to lose."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(_line(arch, accuracy))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise HwnasError(
            f"cannot append to search journal {path}: {exc.strerror}; make room there, then rerun with --resume"
        ) from None


def _entry(text: str) -> tuple[str, float] | None:
    try:
        row = json.loads(text)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    arch, acc = row.get("arch"), row.get("accuracy")
    if not isinstance(arch, str) or isinstance(acc, bool) or not isinstance(acc, (int, float)):
        return None
    if not math.isfinite(acc) or not 0.0 <= acc <= 1.0:
        return None
    return arch, float(acc)


def read_journal(path: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """(identity, arch string -> measured accuracy) of a journal; a torn last line is dropped, other damage refused."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HwnasError(f"no search journal {path}: nothing to resume; run the search without --resume") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HwnasError(f"cannot read search journal {path}: {exc}; delete it or start over with --force") from None
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline, else the last line, possibly torn by a crash
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if (
        not isinstance(header, dict)
        or header.get("schema") != JOURNAL_SCHEMA
        or not isinstance(header.get("search"), dict)
    ):
        raise HwnasError(
            f"{path} is not a hwnas search journal (schema {JOURNAL_SCHEMA}); delete it or start over "
            f"with --force instead of --resume"
        )
    measured: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        entry = _entry(line)
        if entry is None:
            raise HwnasError(
                f"line {number} of search journal {path} is damaged (a crash only tears the last line); "
                f"delete the file or start over with --force instead of --resume"
            )
        measured[entry[0]] = entry[1]
    if tail:
        entry = _entry(tail)
        if entry is None:
            log.info(
                "search journal %s: dropped a torn last line (%d bytes) left by an interrupted write", path, len(tail)
            )
        else:
            measured[entry[0]] = entry[1]
    return header["search"], measured


def _show(key: str, value: Any) -> str:
    return f"{value[:12]}…" if key.endswith("sha256") and isinstance(value, str) else json.dumps(value)


def resume_journal(path: Path, identity: Mapping[str, Any]) -> dict[str, float]:
    """The measurements of `path` if it was written by this same search (`identity`); HwnasError naming what differs."""
    saved, measured = read_journal(path)
    now = json.loads(json.dumps(dict(identity)))  # compare as JSON sees it (tuples -> lists)
    diffs = [
        f"{k} {_show(k, saved.get(k))} in the journal vs {_show(k, now.get(k))} now"
        for k in sorted(set(saved) | set(now))
        if saved.get(k) != now.get(k)
    ]
    if diffs:
        raise HwnasError(
            f"search journal {path} belongs to another search ({'; '.join(diffs[:3])}); rerun with the "
            f"journal's options, or start over with --force instead of --resume"
        )
    return measured
