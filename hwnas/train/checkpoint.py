"""Run directories: checkpoint.pt (atomic), config.json, and `load_run` for search and export.

RUN/checkpoint.pt holds plain tensors and primitives only — model, optimizer, scheduler, RNG states, step, phase,
config, space identity, strategy state — so it loads with `torch.load(weights_only=True)` (no pickle code execution).
It is always written through `hwnas.atomic.atomic_path`: a crash or `kill -9` leaves the previous complete file.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwnas.atomic import atomic_path
from hwnas.errors import HwnasError
from hwnas.space import Arch, SpaceSpec, check_arch, get_space, space_hash, with_io
from hwnas.supernet import Supernet, extract
from hwnas.train.config import TrainConfig, config_from_dict

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "FORMAT",
    "LoadedRun",
    "save_checkpoint",
    "read_checkpoint",
    "load_run",
    "run_space",
    "state_mismatch",
    "load_tensor_file",
]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.csv"
FORMAT = 1


@dataclass(frozen=True)
class LoadedRun:
    """A trained (or imported) supernet ready for search/export (eval mode, CPU unless asked otherwise).

    `source` says where the weights came from when they were not trained here (e.g. ``{"kind": "ofa", ...}`` for
    `hwnas import-ofa`); `predictor` holds an imported accuracy predictor as ``{"kind": ..., "state": {name: tensor}}``.
    """

    run_dir: Path
    space: SpaceSpec
    supernet: Supernet
    config: TrainConfig
    dataset: str
    data_dir: Path | None
    step: int
    total_steps: int
    preprocess: dict[str, Any]
    source: dict[str, Any] | None = None
    predictor: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    def subnet(self, arch: Arch | str) -> torch.nn.Sequential:
        """The static model of `arch` (an `Arch` or its string) with the supernet's weights and stored BN statistics.

        No BN recalibration: this is the module `hwnas export` starts from, in eval mode on the supernet's device.
        """
        parsed = Arch.parse(arch) if isinstance(arch, str) else arch
        return extract(self.supernet, check_arch(self.space, parsed))


def run_space(cfg: TrainConfig, *, in_channels: int, num_classes: int) -> SpaceSpec:
    """The space a run trains: the named preset adapted to the dataset's channels and classes."""
    return with_io(get_space(cfg.space, width=cfg.width), in_channels=in_channels, num_classes=num_classes)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_tensor_file(
    path: Path, *, name: str, pickled_fix: str, truncated_fix: str, map_location: str | torch.device = "cpu"
) -> Any:
    """`torch.load(weights_only=True)` with each failure as one line naming the file (`name`) and the fix: a file that
    holds pickled Python objects (never unpickled) or one that is truncated or not written by torch.save."""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise HwnasError(
            f"{name} holds Python objects, not only tensors, and hwnas never unpickles code "
            f"(torch.load weights_only); {pickled_fix}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile):
        raise HwnasError(f"{name} is truncated or not a file written by torch.save; {truncated_fix}") from None


def read_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; a missing, truncated or foreign file is an `HwnasError` naming the fix."""
    if not path.exists():
        raise HwnasError(f"no {path.name} in {path.parent}; train one with 'hwnas train ... --out {path.parent}'")
    payload = load_tensor_file(
        path,
        name=str(path),
        pickled_fix="it is not an hwnas checkpoint: retrain the run",
        truncated_fix="retrain the run, or resume it with 'hwnas train --resume' if an earlier checkpoint survives",
        map_location=map_location,
    )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "model" not in payload:
        raise HwnasError(f"{path} is not an hwnas checkpoint (format {FORMAT}); retrain with 'hwnas train'")
    return payload


def state_mismatch(expected: dict[str, torch.Tensor], found: Any) -> str | None:
    """Why `found` cannot load into a module whose state dict is `expected` (first missing, unexpected or misshapen
    tensor), or None when it can."""
    if not isinstance(found, dict):
        return f"its model entry is a {type(found).__name__}, not a state dict"
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing:
        return f"tensor {missing[0]!r} is missing ({len(missing)} in all)"
    if unexpected:
        return f"tensor {unexpected[0]!r} is not part of it ({len(unexpected)} in all)"
    for key, want in expected.items():
        got = found[key]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return f"tensor {key!r} has shape {shape}, the supernet needs {list(want.shape)}"
    return None


def load_run(run_dir: str | Path, *, space: SpaceSpec | None = None, device: str | torch.device = "cpu") -> LoadedRun:
    """The supernet of a training run, for search and export. `space`, if given, must be the run's space."""
    run = Path(run_dir)
    if not run.is_dir():
        raise HwnasError(f"run directory {run} not found; train one with 'hwnas train --out {run}'")
    payload = read_checkpoint(run / CHECKPOINT)
    cfg = config_from_dict(payload["config"])
    run_sp = run_space(cfg, in_channels=int(payload["in_channels"]), num_classes=int(payload["num_classes"]))
    if space_hash(run_sp) != payload["space_hash"]:
        raise HwnasError(
            f"{run / CHECKPOINT} was trained on space {cfg.space} hash {payload['space_hash']}, "
            f"this hwnas builds hash {space_hash(run_sp)}; retrain the run with this version"
        )
    if space is not None and space_hash(space) != payload["space_hash"]:
        raise HwnasError(
            f"run {run} was trained on space {cfg.space} (hash {payload['space_hash']}), not "
            f"{space.name} (hash {space_hash(space)}); pass --space {cfg.space} or another --run"
        )
    supernet = Supernet(run_sp)
    mismatch = state_mismatch(supernet.state_dict(), payload["model"])
    if mismatch is not None:
        raise HwnasError(f"{run / CHECKPOINT} does not match the {cfg.space} supernet: {mismatch}; retrain the run")
    supernet.load_state_dict(payload["model"])
    supernet.to(device).eval()
    return LoadedRun(
        run_dir=run,
        space=run_sp,
        supernet=supernet,
        config=cfg,
        dataset=cfg.dataset,
        data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
        step=int(payload["step"]),
        total_steps=int(payload["total_steps"]),
        preprocess=dict(payload.get("preprocess", {})),
        source=dict(payload["source"]) if isinstance(payload.get("source"), dict) else None,
        predictor=dict(payload["predictor"]) if isinstance(payload.get("predictor"), dict) else None,
    )


def read_config_json(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / CONFIG).read_text())  # type: ignore[no-any-return]
    except (OSError, json.JSONDecodeError) as exc:
        raise HwnasError(f"cannot read {run / CONFIG}: {exc}; retrain the run") from None
