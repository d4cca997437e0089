"""A run folder holding a real (untrained, seeded) supernet checkpoint on the synthetic dataset, for search tests.

Search needs a checkpoint `load_run` accepts, not a good one, and training even a few steps costs more than a whole test
file. `Supernet` initialises from torch's global generator, so it is built inside `fork_rng`: the test seeds a copy and
leaves the process's global RNG as it found it.
"""

from __future__ import annotations

from pathlib import Path

from hwnas.space import SpaceSpec


def write_untrained_run(space: SpaceSpec, out: Path, *, seed: int = 0, val_size: int = 256) -> Path:
    import torch

    from hwnas.space import space_hash
    from hwnas.supernet.supernet import Supernet
    from hwnas.train.checkpoint import CHECKPOINT, FORMAT, save_checkpoint
    from hwnas.train.config import TrainConfig, config_to_dict

    cfg = TrainConfig(space=space.name, dataset="synthetic", max_steps=1, batch_size=16, val_size=val_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = Supernet(space)
    save_checkpoint(
        out / CHECKPOINT,
        {
            "format": FORMAT,
            "config": config_to_dict(cfg),
            "space_hash": space_hash(space),
            "in_channels": space.in_channels,
            "num_classes": space.num_classes,
            "preprocess": {},
            "model": net.state_dict(),
            "step": 1,
            "total_steps": 1,
        },
    )
    return out
