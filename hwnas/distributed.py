"""Which torch device a command computes on, and the torchrun process group it belongs to.

One resolution rule for every command that runs models (`train`, `search`, `export`, `quickstart`): `--device` takes
`cpu`, `cuda` or `cuda:N`; left out it means `cuda` when CUDA is available and `cpu` otherwise. Under `torchrun`
(`WORLD_SIZE` > 1) `cuda` means `cuda:LOCAL_RANK`, so each rank owns one GPU, the way DDP scripts are launched. A device
that this machine does not have is a one-line error, never a silent fall-back to the CPU.

The process group is created once per process from torchrun's environment (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, ...;
multi-node launches through `--rdzv-endpoint` set the same variables): NCCL for CUDA devices, gloo for the CPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwnas.errors import HwnasError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEVICE_HELP",
    "Dist",
    "check_device_spec",
    "rank_from_env",
    "resolve_device",
    "setup_distributed",
    "world_size_from_env",
]

DEVICE_HELP = (
    "torch device: cpu, cuda or cuda:N (default: cuda when available, else cpu; under torchrun cuda:LOCAL_RANK)"
)

_SPEC = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def check_device_spec(text: str) -> str:
    """`text` if it names a device kind this tool computes on (`cpu`, `cuda`, `cuda:N`); HwnasError otherwise.
    Cheap and torch-free, so argument checking can run before torch is imported."""
    match = _SPEC.match(text.strip())
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise HwnasError(f"--device {text!r}: expected cpu, cuda or cuda:N")
    return text.strip()


def world_size_from_env() -> int:
    """torchrun's WORLD_SIZE (1 when not launched by torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0"))
    except ValueError:
        return 0


def rank_from_env() -> int:
    """torchrun's RANK (0 when not launched by torchrun): known before the process group forms."""
    return _env_int("RANK")


def resolve_device(spec: str | None) -> torch.device:
    """The torch device for `--device spec` (None: cuda when available, else cpu). Under torchrun, `cuda` is
    `cuda:LOCAL_RANK`. Raises HwnasError for a CUDA device this machine lacks. Sets the current CUDA device."""
    import torch

    text = "cuda" if spec is None and torch.cuda.is_available() else (spec or "cpu")
    text = check_device_spec(text)
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise HwnasError(
            f"--device {text}: CUDA is not available here (torch {torch.__version__}, "
            f"torch.cuda.is_available() is False); use --device cpu"
        )
    count = torch.cuda.device_count()
    index = int(text.split(":")[1]) if ":" in text else (_env_int("LOCAL_RANK") if world_size_from_env() > 1 else 0)
    if index >= count:
        raise HwnasError(
            f"--device {text}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
            f"(cuda:0..cuda:{count - 1}); choose one of them"
        )
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)
    return device


@dataclass(frozen=True, slots=True)
class Dist:
    """This process's place in the job: rank, world size, and the device it computes on."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (picklable), in rank order, on every rank; `[value]` in a single process."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Leave torchrun's process group once the work is done (NCCL warns at exit about a group left open)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def setup_distributed(device_spec: str | None) -> Dist:
    """Resolve the device and, under torchrun, join the process group (NCCL on CUDA, gloo on the CPU) once."""
    import torch.distributed as dist

    device = resolve_device(device_spec)
    world = world_size_from_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=device)
    return Dist(rank=0, world=1, device=device)
