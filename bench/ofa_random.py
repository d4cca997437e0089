"""Random-weight Once-for-All MobileNetV3 supernets and accuracy predictors, built with OFA's own code (PyPI `ofa`).

OFA's trained files cannot be fetched here, so the import is checked and benchmarked on files that OFA's classes write
themselves, with weights that make every difference visible: kernel transform matrices away from identity, random
BatchNorm affine parameters, and BatchNorm statistics estimated for the subnet under test (so activations keep their
scale through all 20 layers instead of vanishing, which would make any two networks look equal).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

__all__ = [
    "OFA_RESOLUTIONS",
    "ofa_supernet",
    "calibrate_bn",
    "save_released",
    "random_arch_dict",
    "arch_string",
    "ofa_predictor",
    "ofa_tutorial_predictor",
]

OFA_RESOLUTIONS = (128, 160, 192, 224)


def ofa_supernet(width: float, *, seed: int) -> torch.nn.Module:
    """OFA's `OFAMobileNetV3` (d234, e346, k357) at `width`, eval mode, with non-trivial random weights."""
    from ofa.imagenet_classification.elastic_nn.networks.ofa_mbv3 import OFAMobileNetV3

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # OFA's constructors initialise from the global generator
    net = OFAMobileNetV3(
        dropout_rate=0, width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("_matrix"):
                p.copy_(torch.eye(p.shape[0]) + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen) + (1.0 if name.endswith("bn.weight") else 0.0))
    return net.eval()


@torch.no_grad()
def calibrate_bn(net: torch.nn.Module, images: torch.Tensor, *, seed: int) -> None:
    """BN statistics of the active subnet estimated on `images`, then jittered (so they are not exactly the batch's)."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    net(images)
    net.eval()
    for m in bns:
        m.momentum = 0.1
        m.running_mean.add_(0.05 * torch.randn(m.running_mean.shape, generator=gen) * m.running_var.sqrt())
        m.running_var.mul_(0.9 + 0.2 * torch.rand(m.running_var.shape, generator=gen))


def save_released(net: torch.nn.Module, path: Path, *, layout: str = "released") -> Path:
    """Save like OFA's published files (`{"state_dict": ...}`, `blocks.N.mobile_inverted_conv.*`) or as current code
    does (`layout="current"`: the module's own names, `blocks.N.conv.*`)."""
    state = net.state_dict()
    if layout == "released":
        state = {
            (
                k.replace(".conv.", ".mobile_inverted_conv.", 1)
                if k.startswith("blocks.") and not k.startswith("blocks.0.")
                else k
            ): v
            for k, v in state.items()
        }
    torch.save({"state_dict": state}, path)
    return path


def random_arch_dict(rng: random.Random, *, resolution: int | None = None) -> dict[str, object]:
    """An OFA arch dict (`ks`, `e`, `d` over 20 layer slots / 5 stages, `image_size`)."""
    return {
        "ks": [rng.choice([3, 5, 7]) for _ in range(20)],
        "e": [rng.choice([3, 4, 6]) for _ in range(20)],
        "d": [rng.choice([2, 3, 4]) for _ in range(5)],
        "image_size": resolution if resolution is not None else rng.choice(OFA_RESOLUTIONS),
    }


def arch_string(arch: dict[str, object]) -> str:
    """The hwnas arch string of an OFA arch dict (the first d[s] of each stage's 4 slots are kept)."""
    ks, es, ds = arch["ks"], arch["e"], arch["d"]
    stages = ["/" + ",".join(f"k{ks[4 * s + j]}e{es[4 * s + j]}" for j in range(ds[s])) for s in range(5)]  # type: ignore[index]
    return f"r{arch['image_size']}" + "".join(stages)


def ofa_predictor(*, seed: int) -> torch.nn.Module:
    """OFA's `AccuracyPredictor` over `MobileNetArchEncoder` (the space's four resolutions), random weights, base_acc."""
    from ofa.nas.accuracy_predictor import AccuracyPredictor, MobileNetArchEncoder

    torch.manual_seed(seed)
    encoder = MobileNetArchEncoder(
        image_size_list=list(OFA_RESOLUTIONS), ks_list=[3, 5, 7], expand_list=[3, 4, 6], depth_list=[2, 3, 4], n_stage=5
    )
    predictor = AccuracyPredictor(encoder, device="cpu")
    with torch.no_grad():
        predictor.base_acc.fill_(0.75)
    return predictor.eval()


def ofa_tutorial_predictor(*, seed: int) -> object:
    """The OFA tutorial's `AccuracyPredictor` (128 inputs, `acc_predictor.pth` layout), random weights.

    Loaded from its file: the `ofa.tutorial` package's `__init__` imports `gdown` (a downloader hwnas does not install).
    """
    import importlib.util

    import ofa

    path = Path(ofa.__file__).parent / "tutorial" / "accuracy_predictor.py"
    spec = importlib.util.spec_from_file_location("ofa_tutorial_accuracy_predictor", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    return module.AccuracyPredictor(pretrained=False, device="cpu")
