"""Shared by the training tests: a run small enough for seconds on a CPU (synthetic data, half width, two steps)."""

from __future__ import annotations

from hwnas.train import TrainConfig


def small_config(mode: str = "bignas", **overrides: object) -> TrainConfig:
    base: dict[str, object] = dict(
        dataset="synthetic",
        mode=mode,
        width=0.5,  # exercises the width multiplier end to end
        epochs=0.0,
        max_steps=2,
        batch_size=4,
        val_size=64,
        checkpoint_every=2,
        log_every=1,
        recal_batches=1,
        eval_batch_size=64,
    )
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]
