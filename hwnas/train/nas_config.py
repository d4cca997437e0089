"""Configuration, temperature schedule and latency-aware losses of the architecture-search training modes.

Loss forms (LAT = expected latency E[LAT](α) in ms, T = target in ms, CE = cross-entropy on a val batch):
- ``fbnet``    CE · a · log(LAT)^b (Wu et al., 2019, a=0.2, b=0.6). LAT is measured in units of T/e, so the log is 1 at
               the target and stays positive for LAT > T/e (FBNet's ms on a phone were ≫1; ours are ≪1, where log < 0).
- ``linear``   CE + λ · LAT / T (ProxylessNAS's additive form with the latency normalised by the target).
- ``mnas``     CE · (LAT / T)^β, β applied only above the target (MnasNet's hard-constraint reward, as a loss).
- ``bisided``  CE + λ · |LAT / T − 1| (TF-NAS): pulls the expected latency to the target from both sides.
- ``none``     CE only.
The first three only push latency down. With ``adapt_rate > 0`` their weight (b, λ or β) is scaled by exp(ν) where ν
follows dual ascent on LAT/T − 1: the push grows while the expected latency is over the target and fades below it,
so the target acts as a budget. ``adapt_rate = 0`` keeps the weight fixed (for λ sweeps).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from hwnas.errors import HwnasError
from hwnas.train.amp import AMP_MODES

__all__ = [
    "NasMode",
    "LatencyLoss",
    "NAS_MODES",
    "LOSS_FORMS",
    "NasConfig",
    "temperature",
    "latency_loss",
    "default_loss",
    "default_weight",
    "reward_factor",
    "nas_config_to_dict",
    "nas_config_from_dict",
]

NasMode = Literal["fbnet", "proxyless", "darts", "enas"]
LatencyLoss = Literal["fbnet", "linear", "mnas", "bisided", "none"]
NAS_MODES: tuple[str, ...] = ("fbnet", "proxyless", "darts", "enas")
LOSS_FORMS: tuple[str, ...] = ("fbnet", "linear", "mnas", "bisided", "none")
_DEFAULT_LOSS = {"fbnet": "fbnet", "proxyless": "linear", "darts": "linear", "enas": "mnas"}
_DEFAULT_WEIGHT = {"fbnet": 0.6, "linear": 1.0, "mnas": 0.5, "bisided": 2.0, "none": 0.0}


def default_loss(mode: str) -> str:
    return _DEFAULT_LOSS[mode]


def default_weight(form: str) -> float:
    return _DEFAULT_WEIGHT[form]


@dataclass(frozen=True, slots=True)
class NasConfig:
    """Everything an architecture-search run depends on (stored in RUN/config.json).

    A step is one SGD step of the supernet weights (each followed, after the warm-up, by an α step every `arch_every`
    steps); an epoch is `steps_per_epoch` such steps (at most the train split). The run is `epochs` epochs, capped at
    `max_steps` steps (counted from the start, warm-up included; it may end mid-epoch). The cosine LR spans the run;
    `schedule_knots` / `schedule_steps` are written when a resume changes the length
    (`hwnas.train.strategy.schedule_step`).
    """

    mode: NasMode
    target_ms: float
    epochs: int = 6
    max_steps: int | None = None  # stop after this many weight steps (None: after `epochs`)
    warmup_epochs: int = 1  # weights only (architecture sampled uniformly from the initial α)
    steps_per_epoch: int | None = None  # cap on weight steps per epoch (None: the whole train split)
    batch_size: int = 128
    resolution: int | None = None  # None: the smallest space resolution >= the images' size
    lr: float = 0.05  # weights: SGD + cosine, on the train split
    momentum: float = 0.9
    weight_decay: float = 4e-5
    alpha_lr: float = 0.01  # α (or the ENAS controller): Adam, on the val split
    alpha_weight_decay: float = 0.0
    arch_every: int = 1  # one α step per this many weight steps
    tau0: float = 5.0  # Gumbel-softmax temperature τ = tau0 · exp(−tau_decay · epoch) (fbnet)
    tau_decay: float = 0.045
    latency_loss: LatencyLoss | None = None  # None: the mode's paper form
    latency_weight: float | None = None  # b (fbnet), λ (linear, bisided), β (mnas); None: the form's default
    fbnet_a: float = 0.2
    adapt_rate: float = 0.0  # dual-ascent rate on the latency weight (0: fixed weight)
    controller_samples: int = 4  # enas: archs per controller step
    baseline_decay: float = 0.9  # enas: moving-average reward baseline
    entropy_weight: float = 1e-3  # enas: entropy bonus
    seed: int = 0
    amp: str = (
        "auto"  # none | bf16 | fp16 (hwnas.train.amp); auto: bf16 on CUDA, none on the CPU; a resume may change it
    )
    schedule_knots: tuple[tuple[int, float], ...] = ()
    schedule_steps: int = 0

    def __post_init__(self) -> None:
        if self.mode not in NAS_MODES:
            raise HwnasError(f"unknown search mode {self.mode!r}; use one of {', '.join(NAS_MODES)}")
        if self.amp not in ("auto", *AMP_MODES):
            raise HwnasError(f"amp must be auto or one of {', '.join(AMP_MODES)}; got {self.amp!r}")
        if not (isinstance(self.target_ms, (int, float)) and math.isfinite(self.target_ms) and self.target_ms > 0):
            raise HwnasError(f"--target-ms must be a positive number of milliseconds, got {self.target_ms!r}")
        if self.latency_loss is not None and self.latency_loss not in LOSS_FORMS:
            raise HwnasError(f"unknown latency loss {self.latency_loss!r}; use one of {', '.join(LOSS_FORMS)}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise HwnasError(f"--epochs must be a whole number >= 1, got {self.epochs!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise HwnasError(f"--max-steps must be a whole number >= 1, got {self.max_steps!r}")
        if not isinstance(self.warmup_epochs, int) or not 0 <= self.warmup_epochs < self.epochs:
            raise HwnasError(f"warm-up epochs must be in 0..epochs-1 ({self.epochs - 1}), got {self.warmup_epochs!r}")
        for name in ("lr", "alpha_lr", "tau0", "batch_size", "arch_every", "controller_samples"):
            if not getattr(self, name) > 0:
                raise HwnasError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.latency_weight is not None and self.latency_weight < 0:
            raise HwnasError(f"latency weight must be >= 0, got {self.latency_weight}")
        if self.adapt_rate < 0 or self.tau_decay < 0:
            raise HwnasError("adapt_rate and tau_decay must be >= 0")

    @property
    def loss_form(self) -> str:
        return self.latency_loss if self.latency_loss is not None else default_loss(self.mode)

    @property
    def weight(self) -> float:
        return self.latency_weight if self.latency_weight is not None else default_weight(self.loss_form)


def nas_config_to_dict(cfg: NasConfig) -> dict[str, Any]:
    """The JSON form stored in config.json and the checkpoint (`nas_config_from_dict` reads it back exactly)."""
    out = dataclasses.asdict(cfg)
    out["schedule_knots"] = [[s, c] for s, c in cfg.schedule_knots]
    return out


def nas_config_from_dict(data: dict[str, Any]) -> NasConfig:
    """Rebuild a stored config; keys a run written by an older hwnas lacks take their defaults."""
    names = {f.name for f in dataclasses.fields(NasConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise HwnasError(f"unknown search config keys {unknown}; the run was written by another hwnas version")
    values = dict(data)
    values["schedule_knots"] = tuple((int(s), float(c)) for s, c in values.get("schedule_knots", ()))
    return NasConfig(**values)


def temperature(cfg: NasConfig, epoch: float) -> float:
    """Gumbel-softmax temperature after `epoch` (fractional) epochs of architecture training: τ0 · e^(−decay·epoch)."""
    return cfg.tau0 * math.exp(-cfg.tau_decay * max(0.0, epoch))


def latency_loss(ce: torch.Tensor, lat_ms: torch.Tensor, cfg: NasConfig, *, scale: float = 1.0) -> torch.Tensor:
    """The architecture loss of form `cfg.loss_form`; `scale` multiplies the latency weight (dual ascent)."""
    form, weight, ratio = cfg.loss_form, cfg.weight * scale, lat_ms / cfg.target_ms
    if form == "fbnet":
        log_lat = torch.log(ratio * math.e).clamp_min(1e-3)
        return ce * cfg.fbnet_a * log_lat**weight
    if form == "linear":
        return ce + weight * ratio
    if form == "mnas":
        return ce * ratio.clamp_min(1.0) ** weight
    if form == "bisided":
        return ce + weight * (ratio - 1.0).abs()
    return ce


def reward_factor(lat_ms: torch.Tensor, cfg: NasConfig, *, scale: float = 1.0) -> torch.Tensor:
    """ENAS / MnasNet reward multiplier (LAT/T)^w, w = −β above the target and 0 below (hard-constraint form)."""
    ratio = lat_ms / cfg.target_ms
    if cfg.loss_form == "none":
        return torch.ones_like(ratio)
    if cfg.loss_form == "bisided":
        return torch.exp(-cfg.weight * scale * (ratio - 1.0).abs())
    return torch.where(ratio > 1.0, ratio ** (-cfg.weight * scale), torch.ones_like(ratio))
