"""`TrainConfig`: every knob of a supernet training run, frozen, stored verbatim in config.json and checkpoint.pt."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from hwnas.errors import HwnasError
from hwnas.train.amp import AMP_MODES

__all__ = ["TrainConfig", "config_to_dict", "config_from_dict", "run_steps", "RESUME_CHANGEABLE", "resume_conflicts"]

RESUME_CHANGEABLE = ("epochs", "max_steps", "checkpoint_every", "threads", "data_dir", "amp")
"""Fields a resumed run may change: its length (the schedule is stretched, see `hwnas.train.strategy.schedule_step`)
and how it runs (checkpoint cadence, CPU threads, where the dataset lives, mixed precision: a run trained on a GPU
may continue on the CPU and back). Anything else would make a different run. The device is no field at all: it is
recorded in config.json as a fact (`torch_device`), not part of the run's identity."""


@dataclass(frozen=True)
class TrainConfig:
    """A run is a pure function of this config (and the data): resuming re-derives everything else from it and the step.

    `epochs` sets the schedule length; `max_steps` (0 = none) caps it, the LR schedule then spans the capped length.
    `schedule_knots` and `schedule_steps` are written by `train` when a resume changes the length (never set by hand):
    see `hwnas.train.strategy.schedule_step`.
    """

    space: str = "mbv3-tiny"
    width: float = 1.0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    mode: str = "bignas"
    epochs: float = 3.0
    max_steps: int = 0
    batch_size: int = 64  # per process; 64 beat 128 at equal images seen (87.9% vs 86.4% after 0.7 epoch), same img/s
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    warmup_fraction: float = 0.03
    lr_end_fraction: float = 0.05  # bignas: exponential decay down to this fraction of lr, then constant
    decay_end_fraction: float = 0.85  # bignas: where the exponential decay reaches lr_end_fraction
    label_smoothing: float = 0.1
    augment: str = "crop-flip"  # hwnas.data.AUGMENTS; "none" is better for runs of a few epochs
    grad_clip: float = 5.0
    num_random: int = 1  # bignas: random subnets per step between max and min; ofa: subnets per step after phase 1
    kd_temperature: float = 1.0
    ofa_phase_fractions: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    max_resolution_for_max: bool = True  # bignas: the max subnet always at the largest resolution
    val_size: int = 5000
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 20
    eval_every_epochs: int = 1
    recal_batches: int = 20
    eval_batch_size: int = 500
    channels_last: bool = True
    amp: str = "auto"  # none | bf16 | fp16 (hwnas.train.amp); auto: bf16 on CUDA, none on the CPU, on each (re)start
    threads: int = 0  # 0 = leave torch's setting alone
    schedule_knots: tuple[tuple[int, float], ...] = ()  # (step, schedule step) where a resume changed the length
    schedule_steps: int = 0  # length of the schedule the strategy sees; 0 = the run's total steps

    def __post_init__(self) -> None:
        if self.epochs <= 0 and self.max_steps <= 0:
            raise HwnasError("a run needs --epochs > 0 or --max-steps > 0")
        if self.batch_size < 2:
            raise HwnasError(f"batch size must be >= 2 (BatchNorm needs it), got {self.batch_size}")
        if self.lr <= 0 or not 0 < self.lr_end_fraction <= 1:
            raise HwnasError(f"lr must be > 0 and lr_end_fraction in (0, 1], got {self.lr}, {self.lr_end_fraction}")
        if abs(sum(self.ofa_phase_fractions) - 1) > 1e-6 or len(self.ofa_phase_fractions) != 4:
            raise HwnasError(f"ofa_phase_fractions must be 4 fractions summing to 1, got {self.ofa_phase_fractions}")
        if self.augment not in ("none", "flip", "crop-flip"):
            raise HwnasError(f"augment must be one of none, flip, crop-flip; got {self.augment!r}")
        if self.amp not in ("auto", *AMP_MODES):
            raise HwnasError(f"amp must be auto or one of {', '.join(AMP_MODES)}; got {self.amp!r}")
        if self.checkpoint_every < 1 or self.log_every < 1 or self.num_random < 0:
            raise HwnasError("checkpoint_every and log_every must be >= 1, num_random >= 0")
        steps = [s for s, _ in self.schedule_knots]
        clocks = [c for _, c in self.schedule_knots]
        ordered = steps == sorted(set(steps)) and clocks == sorted(clocks)
        if self.schedule_knots and (
            self.schedule_steps < 1
            or not ordered
            or steps[0] < 1
            or not 0 <= clocks[0] <= clocks[-1] <= self.schedule_steps
        ):
            raise HwnasError(
                f"schedule_knots {self.schedule_knots} / schedule_steps {self.schedule_steps} are not a "
                "valid stretched schedule; they are written by 'hwnas train --resume', not by hand"
            )


def run_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run: `epochs` worth of steps, capped by `max_steps` (either may be 0 = unset)."""
    total = math.ceil(cfg.epochs * steps_per_epoch) if cfg.epochs > 0 else cfg.max_steps
    return min(total, cfg.max_steps) if cfg.max_steps else total


def resume_conflicts(saved: TrainConfig, cfg: TrainConfig) -> list[str]:
    """Fields where `cfg` differs from the stored `saved` config and that a resume may not change."""
    return [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUME_CHANGEABLE and getattr(saved, f.name) != getattr(cfg, f.name)
    ]


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    out["ofa_phase_fractions"] = list(cfg.ofa_phase_fractions)
    out["schedule_knots"] = [[s, c] for s, c in cfg.schedule_knots]
    return out


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config from config.json / a checkpoint; unknown keys are an error, missing keys take defaults."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise HwnasError(f"unknown training config keys {unknown}; the run was written by another hwnas version")
    values = dict(data)
    if "ofa_phase_fractions" in values:
        values["ofa_phase_fractions"] = tuple(values["ofa_phase_fractions"])
    if isinstance(values.get("amp"), bool):  # runs written before --amp had modes: True meant the device's default
        values["amp"] = "auto" if values["amp"] else "none"
    if "schedule_knots" in values:
        values["schedule_knots"] = tuple((int(s), float(c)) for s, c in values["schedule_knots"])
    return TrainConfig(**values)
