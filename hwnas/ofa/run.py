"""`import_ofa`: a published Once-for-All MobileNetV3 supernet (and optionally its accuracy predictor) → an hwnas run.

The run folder is the one `hwnas train` writes (`checkpoint.pt`, `config.json`), so `hwnas search`, `hwnas export`,
`hwnas report` and `hwnas.load_run` take it like a trained run. What differs is recorded, not implied: the checkpoint's
`source` names the OFA file and its sha256; `preprocess` is ImageNet's (resize the shorter side to r/0.875, centre crop,
ImageNet mean/std); the data is an ImageNet-style folder given at search/export time (`--data-dir`); `step` equals
`total_steps` (0), so nothing will try to continue training it.

Everything is validated before anything is written, and the two files are written atomically: a bad input leaves no
run folder behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_write_json
from hwnas.data.imagenet import IMAGENET_DATASET, imagenet_preprocess
from hwnas.digest import file_sha256
from hwnas.errors import HwnasError
from hwnas.ofa.predictor import load_predictor_state, predictor_from_state
from hwnas.ofa.weights import infer_width, ofa_space, read_torch_file, state_dict_of, supernet_state_from_ofa
from hwnas.space import space_hash
from hwnas.supernet import Supernet
from hwnas.train.checkpoint import CHECKPOINT, CONFIG, FORMAT, save_checkpoint
from hwnas.train.config import TrainConfig, config_to_dict

__all__ = ["ImportResult", "import_ofa"]


@dataclass(frozen=True, slots=True)
class ImportResult:
    run_dir: Path
    width: float
    parameters: int
    predictor_kind: str | None
    seconds: float
    source_sha256: str

    def summary(self) -> dict[str, Any]:
        return {
            "run": str(self.run_dir),
            "space": "mbv3",
            "width": self.width,
            "parameters": self.parameters,
            "predictor": self.predictor_kind,
            "seconds": round(self.seconds, 3),
            "source_sha256": self.source_sha256,
        }


def import_ofa(
    checkpoint: Path, out: Path, *, width: float | None = None, predictor: Path | None = None
) -> ImportResult:
    """Write run folder `out` from OFA's supernet file `checkpoint` (width inferred from its stem when None)."""
    start = time.perf_counter()
    state = state_dict_of(read_torch_file(checkpoint, what="OFA checkpoint"), what="OFA checkpoint", path=checkpoint)
    found = infer_width(state, path=checkpoint)
    if width is not None and width != found:
        raise HwnasError(
            f"{checkpoint} is OFA's width-{found:.1f} supernet (stem of {ofa_space(found).stem_ch} channels), "
            f"not width {width:.1f}; pass --width {found:.1f} or leave --width out"
        )
    space = ofa_space(found)
    supernet = Supernet(space)
    model_state = supernet_state_from_ofa(state, space, expected=supernet.state_dict(), path=checkpoint)
    supernet.load_state_dict(model_state)
    predictor_entry = None
    if predictor is not None:
        tensors = load_predictor_state(predictor)
        bound = predictor_from_state(tensors, space, where=f"accuracy predictor {predictor}")
        predictor_entry = {
            "kind": bound.kind,
            "state": bound.state,
            "file": predictor.name,
            "sha256": file_sha256(predictor),
        }
    source_sha = file_sha256(checkpoint)
    cfg = TrainConfig(space="mbv3", width=found, dataset=IMAGENET_DATASET, mode="ofa", epochs=1.0)
    source = {"kind": "ofa", "file": checkpoint.name, "sha256": source_sha, "width": found}
    preprocess = imagenet_preprocess(max(space.resolutions))
    payload = {
        "format": FORMAT,
        "config": config_to_dict(cfg),
        "space_hash": space_hash(space),
        "in_channels": space.in_channels,
        "num_classes": space.num_classes,
        "model": supernet.state_dict(),
        "step": 0,
        "total_steps": 0,
        "preprocess": preprocess,
        "source": source,
    }
    if predictor_entry is not None:
        payload["predictor"] = predictor_entry
    save_checkpoint(out / CHECKPOINT, payload)
    config = {
        **config_to_dict(cfg),
        "space_hash": space_hash(space),
        "in_channels": space.in_channels,
        "num_classes": space.num_classes,
        "preprocess": preprocess,
        "source": source,
        "predictor": None if predictor_entry is None else {k: v for k, v in predictor_entry.items() if k != "state"},
    }
    atomic_write_json(out / CONFIG, config)
    return ImportResult(
        run_dir=out,
        width=found,
        parameters=sum(p.numel() for p in supernet.parameters()),
        predictor_kind=None if predictor_entry is None else str(predictor_entry["kind"]),
        seconds=time.perf_counter() - start,
        source_sha256=source_sha,
    )
