"""Supernet training: modes (ofa, bignas, spos, ...), the shared loop, evaluation, checkpoints and `load_run`."""

from hwnas.train.checkpoint import CHECKPOINT, CONFIG, METRICS, LoadedRun, load_run, read_checkpoint, run_space
from hwnas.train.config import TrainConfig, config_from_dict, config_to_dict
from hwnas.train.evaluate import accuracy, evaluate_arch, recalibrate_bn
from hwnas.train.loop import TrainResult, steps_per_epoch, train
from hwnas.train.strategy import StepContext, available_modes, load_strategy

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "LoadedRun",
    "load_run",
    "read_checkpoint",
    "run_space",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "accuracy",
    "evaluate_arch",
    "recalibrate_bn",
    "TrainResult",
    "steps_per_epoch",
    "train",
    "StepContext",
    "available_modes",
    "load_strategy",
]
