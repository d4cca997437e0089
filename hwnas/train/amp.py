"""Mixed precision for training: `--amp none|bf16|fp16`, autocast around forward + loss, fp16's gradient scaler.

- `bf16` (the default on CUDA) keeps float32's exponent range, so gradients need no scaling. CPU autocast supports it
  too (`--amp bf16` on the CPU is allowed; whether it is faster depends on the CPU's bf16 instructions).
- `fp16` needs loss scaling against gradient underflow: a `torch.amp.GradScaler`, whose state (scale, growth
  tracker) is saved in the checkpoint so a resumed run continues it. It is a CUDA-only mode here; on the CPU it is
  a one-line error.
- `none` (the default on the CPU): float32 throughout.

Autocast covers the network's forward passes only; the losses are computed from their logits cast to float32 (what
autocast itself does for cross-entropy and softmax), backward runs outside it, and the optimizer steps the float32
master weights. Evaluation — BN recalibration, val accuracy, the search scorer, export — always runs float32
without autocast, so a subnet's accuracy means the same whichever precision trained the weights.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from hwnas.errors import HwnasError

if TYPE_CHECKING:
    import torch

__all__ = ["AMP_MODES", "check_amp", "resolve_amp", "autocast", "grad_scaler"]

AMP_MODES = ("none", "bf16", "fp16")


def check_amp(amp: str, device: torch.device) -> str:
    """`amp` if this device can train with it; HwnasError otherwise (fp16 is CUDA-only)."""
    if amp not in AMP_MODES:
        raise HwnasError(f"--amp {amp!r}: expected one of {', '.join(AMP_MODES)}")
    if amp == "fp16" and device.type != "cuda":
        raise HwnasError(
            f"--amp fp16 needs a CUDA device (fp16 training with loss scaling); on {device} use --amp bf16 or none"
        )
    return amp


def resolve_amp(amp: str | None, device: torch.device) -> str:
    """The precision a run trains with: `amp` as given (checked), or for None / "auto" the device's default."""
    if amp is None or amp == "auto":
        return "bf16" if device.type == "cuda" else "none"
    return check_amp(amp, device)


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """`torch.autocast` for the forward pass and loss at precision `amp` (a no-op for "none")."""
    import torch

    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler: active for fp16 only; for the other modes a disabled one whose `scale`, `unscale_`, `step` and
    `update` are pass-throughs (so the loops have one code path)."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
