"""Once-for-All MobileNetV3 supernet checkpoints → the `mbv3` `Supernet` state dict.

OFA (Cai et al., 2020) publishes `ofa_mbv3_d234_e346_k357_w1.0` and `_w1.2`: the same space as hwnas's `mbv3` (5 elastic
stages, k{3,5,7}, e{3,4,6}, d{2,3,4}, kernel transform matrices 7→5→3, SE in stages 2/4/5, h-swish from stage 3). Only
the parameter names and a few layouts differ, so importing is a renaming with shape checks, no retraining:

| OFA (flattened name)                                   | hwnas `Supernet`                  |
|--------------------------------------------------------|-----------------------------------|
| `first_conv.conv` / `.bn`                              | `stem.0` / `stem.1`               |
| `blocks.0.conv.depth_conv` / `.point_linear`           | `first.dw` / `first.project`      |
| `blocks.N.conv.inverted_bottleneck.conv` / `.bn`       | `stages.s.j.expand_weight` / `expand_bn` (N = 4·s + j + 1) |
| `blocks.N.conv.depth_conv.conv.weight` / `7to5_matrix` | `dw_weight` / `kernel_transforms.7to5` |
| `blocks.N.conv.depth_conv.se.fc.reduce` / `.expand`    | `se_fc1` / `se_fc2`               |
| `blocks.N.conv.point_linear.conv` / `.bn`              | `project_weight` / `project_bn`   |
| `final_expand_layer.conv` / `.bn`                      | `head.widen.0` / `head.widen.1`   |
| `feature_mix_layer.conv` (no bias, no BN)              | `head.feature` (its bias set to 0)|
| `classifier.linear`                                    | `head.classifier`                 |

Names are flattened before matching, so every layout OFA has written loads: released files say
`blocks.N.mobile_inverted_conv.*` where the current code says `blocks.N.conv.*`; dynamic layers nest their modules
(`.conv.conv.weight`, `.bn.bn.weight`, `.linear.linear.weight`) where static ones do not; DataParallel adds `module.`.
OFA's transform convention (`F.linear(centre crop, M)`, i.e. crop @ Mᵀ) is the one `hwnas.supernet.elastic` uses, and
its BatchNorm eps (1e-5 in the published networks) is torch's default, which the hwnas blocks use too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from hwnas.errors import HwnasError
from hwnas.space import SpaceSpec, get_space
from hwnas.train.checkpoint import load_tensor_file

__all__ = [
    "OFA_WIDTHS",
    "read_torch_file",
    "state_dict_of",
    "flatten_ofa_key",
    "infer_width",
    "ofa_space",
    "supernet_state_from_ofa",
]

OFA_WIDTHS = (1.0, 1.2)
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_LAYERS_PER_STAGE = 4  # OFA's mbv3 keeps max(depth_list) = 4 blocks per stage


def read_torch_file(path: Path, *, what: str) -> object:
    """`torch.load(weights_only=True)` with every failure as one line: missing, truncated, or a pickle that would run code."""
    if not path.is_file():
        raise HwnasError(f"{what} {path} not found; pass the path of the downloaded file")
    return load_tensor_file(
        path,
        name=f"{what} {path}",
        pickled_fix="re-save it as a state dict of tensors",
        truncated_fix="download it again",
    )


def state_dict_of(payload: object, *, what: str, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file: `payload["state_dict"]` when present (OFA's release format), else the dict itself."""
    if isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    if not isinstance(payload, Mapping) or not payload:
        raise HwnasError(f"{what} {path} holds no state dict (a dict of tensors, or {{'state_dict': ...}})")
    out: dict[str, torch.Tensor] = {}
    for key, value in payload.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise HwnasError(f"{what} {path}: entry {key!r} is not a named tensor; expected a state dict")
        out[key] = value
    return out


def flatten_ofa_key(key: str) -> str:
    """One spelling for every OFA layout: no `module.`, `.conv.` for `.mobile_inverted_conv.`, nested names collapsed."""
    if key.startswith("module."):
        key = key[len("module.") :]
    key = key.replace(".mobile_inverted_conv.", ".conv.")
    key = key.replace(".bn.bn.", ".bn.").replace(".linear.linear.", ".linear.")
    return re.sub(r"\.conv\.conv\.weight$", ".conv.weight", key)


def ofa_space(width: float) -> SpaceSpec:
    """The `mbv3` space (3 channels, 1,000 ImageNet classes) at one of OFA's published widths."""
    if width not in OFA_WIDTHS:
        raise HwnasError(
            f"OFA publishes MobileNetV3 supernets at width 1.0 and 1.2, not {width}; pass --width 1.0 or 1.2"
        )
    return get_space("mbv3", width=width)


def _bn(ofa: str, ours: str) -> dict[str, str]:
    return {f"{ours}.{field}": f"{ofa}.{field}" for field in _BN_FIELDS}


def _key_map(space: SpaceSpec) -> dict[str, str]:
    """hwnas `Supernet` key → flattened OFA key, for every tensor that has an OFA counterpart."""
    names = {
        "stem.0.weight": "first_conv.conv.weight",
        **_bn("first_conv.bn", "stem.1"),
        "first.dw.0.weight": "blocks.0.conv.depth_conv.conv.weight",
        **_bn("blocks.0.conv.depth_conv.bn", "first.dw.1"),
        "first.project.0.weight": "blocks.0.conv.point_linear.conv.weight",
        **_bn("blocks.0.conv.point_linear.bn", "first.project.1"),
    }
    block = 1
    for s, stage in enumerate(space.stages):
        for j in range(max(stage.depths)):
            src, dst = f"blocks.{block}.conv", f"stages.{s}.{j}"
            names |= {
                f"{dst}.expand_weight": f"{src}.inverted_bottleneck.conv.weight",
                **_bn(f"{src}.inverted_bottleneck.bn", f"{dst}.expand_bn"),
                f"{dst}.dw_weight": f"{src}.depth_conv.conv.weight",
                **_bn(f"{src}.depth_conv.bn", f"{dst}.dw_bn"),
                f"{dst}.project_weight": f"{src}.point_linear.conv.weight",
                **_bn(f"{src}.point_linear.bn", f"{dst}.project_bn"),
            }
            kernels = sorted(stage.kernels, reverse=True)
            for big, small in zip(kernels, kernels[1:]):
                names[f"{dst}.kernel_transforms.{big}to{small}"] = f"{src}.depth_conv.conv.{big}to{small}_matrix"
            if stage.se:
                names |= {
                    f"{dst}.se_fc1.weight": f"{src}.depth_conv.se.fc.reduce.weight",
                    f"{dst}.se_fc1.bias": f"{src}.depth_conv.se.fc.reduce.bias",
                    f"{dst}.se_fc2.weight": f"{src}.depth_conv.se.fc.expand.weight",
                    f"{dst}.se_fc2.bias": f"{src}.depth_conv.se.fc.expand.bias",
                }
            block += 1
    names |= {
        "head.widen.0.weight": "final_expand_layer.conv.weight",
        **_bn("final_expand_layer.bn", "head.widen.1"),
        "head.feature.weight": "feature_mix_layer.conv.weight",
        "head.classifier.weight": "classifier.linear.weight",
        "head.classifier.bias": "classifier.linear.bias",
    }
    return names


def _flattened(state: Mapping[str, torch.Tensor], *, path: Path) -> dict[str, tuple[str, torch.Tensor]]:
    """Flattened key → (original key, tensor); two spellings of one tensor are an error."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value in state.items():
        flat = flatten_ofa_key(key)
        if flat in out:
            raise HwnasError(
                f"OFA checkpoint {path} has both {out[flat][0]!r} and {key!r} for one tensor; "
                "pass a checkpoint saved by OFA"
            )
        out[flat] = (key, value)
    return out


def _looks_like(flat: Mapping[str, object]) -> str:
    if any(k.startswith("input_stem.") for k in flat):
        return " (it looks like an OFA ResNet checkpoint)"
    if "feature_mix_layer.conv.weight" in flat and "final_expand_layer.conv.weight" not in flat:
        return " (it looks like an OFA ProxylessNAS checkpoint)"
    return ""


def infer_width(state: Mapping[str, torch.Tensor], *, path: Path) -> float:
    """The OFA width whose stem matches `first_conv`'s output channels (16 for 1.0, 24 for 1.2)."""
    flat = _flattened(state, path=path)
    stem = flat.get("first_conv.conv.weight")
    if stem is None:
        raise HwnasError(
            f"{path} is not an OFA MobileNetV3 checkpoint: it has no 'first_conv.conv.weight'{_looks_like(flat)}"
        )
    for width in OFA_WIDTHS:
        if stem[1].shape[0] == ofa_space(width).stem_ch:
            return width
    raise HwnasError(
        f"{path}: stem has {stem[1].shape[0]} channels, which matches no published OFA MobileNetV3 width "
        f"({', '.join(f'{w:.1f}: {ofa_space(w).stem_ch}' for w in OFA_WIDTHS)})"
    )


def supernet_state_from_ofa(
    state: Mapping[str, torch.Tensor], space: SpaceSpec, *, expected: Mapping[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """The `Supernet(space)` state dict holding OFA's tensors; `expected` is a freshly built supernet's state dict.

    Checked before anything is written: every OFA tensor the space needs is present with this space's shape, and no
    tensor is left over. BatchNorm's `num_batches_tracked` may be missing (files saved by old torch); the feature
    layer's bias, which OFA does not have, is zero.
    """
    flat = _flattened(state, path=path)
    names = _key_map(space)
    out: dict[str, torch.Tensor] = {}
    for ours, ofa in names.items():
        if ofa not in flat:
            if ofa.endswith(".num_batches_tracked"):
                out[ours] = torch.zeros((), dtype=torch.long)
                continue
            raise HwnasError(
                f"{path} is not an OFA MobileNetV3 checkpoint of width {space.width:.1f}: it lacks "
                f"{ofa!r}{_looks_like(flat)}"
            )
        original, tensor = flat[ofa]
        want = expected[ours]
        if tuple(tensor.shape) != tuple(want.shape):
            raise HwnasError(
                f"{path}: {original!r} has shape {list(tensor.shape)}, width {space.width:.1f} of the mbv3 "
                f"space needs {list(want.shape)}; check --width (OFA publishes 1.0 and 1.2)"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise HwnasError(f"{path}: {original!r} holds NaN or infinite values; download the checkpoint again")
        out[ours] = tensor.to(want.dtype).clone()
    leftover = sorted(set(flat) - set(names.values()))
    if leftover:
        raise HwnasError(
            f"{path} has tensor {flat[leftover[0]][0]!r} that the mbv3 space of width {space.width:.1f} "
            f"does not have ({len(leftover)} unexpected in all){_looks_like(flat)}"
        )
    out["head.feature.bias"] = torch.zeros_like(expected["head.feature.bias"])
    missing = sorted(set(expected) - set(out))
    assert not missing, f"key map misses {missing[:3]}"
    return out
