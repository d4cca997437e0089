"""metrics.csv: one row per log interval and per evaluation, rewritten atomically (so it always matches a checkpoint)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_write_text

__all__ = ["COLUMNS", "write_metrics", "read_metrics"]

COLUMNS = (
    "step",
    "epoch",
    "phase",
    "lr",
    "loss",
    "loss_kd",
    "img_per_s",
    "val_acc_max",
    "val_acc_min",
    "elapsed_s",
    "torch_device",  # where the interval ran (a resumed run may move between devices; img_per_s depends on it)
)


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: Path, *, before_step: int) -> list[dict[str, Any]]:
    """Rows logged before `before_step` (a resumed run drops rows written after its checkpoint)."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        rows = [dict(r) for r in csv.DictReader(fh)]
    return [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= before_step]


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
