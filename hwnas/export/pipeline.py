"""The export pipeline: trained supernet + arch → verified ONNX (and int8) files with a model card.

extract → BN recalibration → optional KD fine-tune → test accuracy → ONNX (opset `OPSET`, dynamic batch) → onnx.checker →
onnxruntime parity on real test images → optional static int8 with its accuracy → latency of the exported files measured
with the device profile's protocol, next to the LUT prediction → model_card.json. Every file is written atomically; a
failed step leaves no half-written outputs behind.

A compound-scaled arch (`hwnas search --strategy scale`) is outside the trained supernet: its model is built in the
scaled space and initialised from the supernet's weights of the base arch (`hwnas.search.scale.init_scaled_model`),
then the KD fine-tune is required (at least `MIN_SCALED_FINETUNE_EPOCHS`), since its accuracy comes from it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwnas.errors import HwnasError
from hwnas.export.card import build_model_card, make_preprocess, write_model_card
from hwnas.export.finetune import FinetuneConfig, finetune_kd
from hwnas.export.int8 import quantize_int8
from hwnas.export.onnx import OPSET, export_onnx
from hwnas.export.parity import ParityResult, check_parity, onnx_accuracy
from hwnas.space import Arch, SpaceSpec, check_arch, largest

__all__ = [
    "ExportConfig",
    "ExportResult",
    "OUTPUT_FILES",
    "export_run",
    "kd_teacher",
    "arch_from_search",
    "read_search",
    "read_scaled",
    "measure_exported",
    "predicted_ms_for",
    "lut_for",
    "MIN_SCALED_FINETUNE_EPOCHS",
    "SCALED_FINETUNE_EPOCHS",
]

log = logging.getLogger(__name__)

OUTPUT_FILES = ("model.onnx", "model.int8.onnx", "model_card.json", "model.pte")
PARITY_MAX_ABS_DIFF = 1e-4
MIN_SCALED_FINETUNE_EPOCHS = 1  # a scaled arch's new channels and layers start untrained (identities / cut off)
SCALED_FINETUNE_EPOCHS = 3  # the command line's default for a scaled arch


@dataclass(frozen=True, slots=True)
class ExportConfig:
    finetune: FinetuneConfig = FinetuneConfig()
    int8: bool = False
    device: str = "cpu-ort-1t"  # profile name or YAML path for the measured latency
    lut: Path | None = None  # LUT for the predicted latency (None: latency_tables/<device>/<space>.csv if present)
    parity_images: int = 1000
    test_images: int | None = None  # None: the whole test split (first N test images otherwise, for quick checks)
    calib_images: int = 512  # train images for int8 calibration
    recalib_batches: int = 20  # train batches for BN recalibration
    batch_size: int = 128
    seed: int = 0
    measure: bool = True  # time the exported files (skip in tests that only check files)
    pte: bool = False  # also write model.pte (ExecuTorch + XNNPACK; needs hwnas[mobile])
    pte_device: str = "cpu-et-xnnpack-1t"  # executorch profile the .pte is timed on
    data_dir: Path | None = None  # the run's data folder, if not the one it recorded (required for imported runs)

    def __post_init__(self) -> None:
        for name in ("parity_images", "calib_images", "recalib_batches", "batch_size", "test_images"):
            value = getattr(self, name)
            if value is None and name == "test_images":
                continue
            if not isinstance(value, int) or value < 1:
                raise HwnasError(f"export {name} must be a positive whole number, got {value!r}")


@dataclass(frozen=True, slots=True)
class ExportResult:
    out_dir: Path
    onnx: Path
    card: Path
    int8_onnx: Path | None
    arch: Arch
    test_acc: float
    int8_test_acc: float | None
    parity: ParityResult
    predicted_ms: float | None
    measured_ms: float | None
    int8_measured_ms: float | None
    pte: dict[str, Any] | None = None  # the model card's "pte" entry when --format pte
    machine_speed_factor: float | None = None  # machine now vs the LUT's build (> 1: slower now), from its references
    scaled: dict[str, Any] | None = None  # the model card's "scaled" entry for a compound-scaled arch

    def drift_note(self) -> str | None:
        """One line on the machine's drift since the LUT was built and the prediction once it is taken out."""
        if self.machine_speed_factor is None or not (self.predicted_ms and self.measured_ms):
            return None
        now = self.predicted_ms * self.machine_speed_factor
        return (
            f"the LUT's reference subnets run x{self.machine_speed_factor:.3f} their build-time latency now: "
            f"predicted at today's speed {now:.3f} ms ({100 * (self.measured_ms / now - 1):+.1f}% measured)"
        )

    def int8_tradeoff(self) -> tuple[float, float, bool] | None:
        """(int8 speed-up over fp32, accuracy drop in pp, worth shipping) — None without both int8 measurements.

        int8 is worth it only when it is at least 1.1x faster and loses at most 1 pp of test accuracy.
        """
        if self.int8_test_acc is None or not self.measured_ms or not self.int8_measured_ms:
            return None
        speedup = self.measured_ms / self.int8_measured_ms
        drop_pp = 100 * (self.test_acc - self.int8_test_acc)
        return speedup, drop_pp, speedup >= 1.1 and drop_pp <= 1.0

    def summary(self) -> dict[str, Any]:
        """The `hwnas export --json` contract."""
        return {
            "onnx": str(self.onnx),
            "max_abs_diff": self.parity.max_abs_diff,
            "top1_agreement": self.parity.top1_agreement,
            "test_acc": self.test_acc,
            "predicted_ms": self.predicted_ms,
            "measured_ms": self.measured_ms,
            "int8": None
            if self.int8_onnx is None
            else {"onnx": str(self.int8_onnx), "test_acc": self.int8_test_acc, "measured_ms": self.int8_measured_ms},
            "pte": self.pte,
            "machine_speed_factor": self.machine_speed_factor,
            "scaled": self.scaled,
        }


def read_search(path: str | os.PathLike[str]) -> tuple[str, Path | None]:
    """(winning arch string, LUT it was searched with or None) of a `hwnas search` search.json."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise HwnasError(f"search file {p} not found; run 'hwnas search' first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HwnasError(f"cannot read search file {p}: {exc}; re-run 'hwnas search'") from None
    if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
        raise HwnasError(f"{p} has no winning 'arch'; pass a search.json written by 'hwnas search'")
    lut = data.get("lut")
    return data["arch"], Path(lut) if isinstance(lut, str) and Path(lut).is_file() else None


def read_scaled(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The 'scaled' entry of a `hwnas search --strategy scale` result (what `export_run(scaled=...)` takes), or None
    for an arch of the trained space."""
    read_search(path)  # the file's own errors first
    scaled = json.loads(Path(path).read_text()).get("scaled")
    return scaled if isinstance(scaled, dict) else None


def arch_from_search(path: str | os.PathLike[str]) -> str:
    """The winning arch string of a `hwnas search` result file."""
    return read_search(path)[0]


# ---- latency -----------------------------------------------------------------------------------------------------------


def measure_exported(
    paths: Sequence[Path],
    input_shape: tuple[int, ...],
    profile: Any,
    *,
    space: SpaceSpec,
    references: Sequence[Any] = (),
) -> tuple[dict[Path, float], float | None]:
    """p50 ms of exported ONNX files, timed interleaved with the LUT's drift reference subnets (`hwnas.latency.drift`)
    when given: (ms per file, machine speed factor relative to the LUT's build, or None without references)."""
    import random

    from hwnas.blocks import build_model
    from hwnas.latency.drift import speed_factor
    from hwnas.latency.harness import Protocol, run_protocol
    from hwnas.latency.profiles import profile_timer
    from hwnas.latency.runtime import OrtRunner

    if profile.runtime != "onnxruntime":
        raise HwnasError(
            f"profile {profile.name} times runtime {profile.runtime}, not an ONNX file; "
            "use an onnxruntime profile such as cpu-ort-1t"
        )
    # The file is already fp32 or int8: the runner only has to load and run it.
    runner = OrtRunner(dataclasses.replace(profile, dtype="fp32"))
    loaded: dict[Any, Any] = {("file", p): runner.load_onnx(p.read_bytes(), input_shape) for p in paths}
    for ref in references:
        shape = (profile.batch, space.in_channels, ref.arch.resolution, ref.arch.resolution)
        loaded[("ref", ref.arch)] = runner.load(build_model(space, ref.arch), shape)
    try:
        stats = run_protocol(
            {k: ld.run for k, ld in loaded.items()},
            Protocol.from_profile(profile, warmup_s=min(profile.warmup_s, 2.0)),
            rng=random.Random(0),
            timer=profile_timer(profile),
        )
    finally:
        for ld in loaded.values():
            ld.release()
    ref_ms = {key[1]: st.p50_ms for key, st in stats.items() if key[0] == "ref"}
    speed = speed_factor(references, ref_ms) if ref_ms else None
    return {key[1]: st.p50_ms for key, st in stats.items() if key[0] == "file"}, speed


def drift_references(table: Any, space: SpaceSpec, arch: Arch, *, profile: Any) -> tuple[Any, ...]:
    """The LUT's reference subnets for the speed factor: fp32 local tables only (int8 tables were timed quantized,
    remote ones elsewhere), at the arch's resolution when the table has calibration subnets there."""
    from hwnas.latency.drift import reference_archs

    if table is None or profile.dtype != "fp32" or profile.remote:
        return ()
    return reference_archs(table, resolutions=(arch.resolution,), n=4) or reference_archs(
        table, resolutions=table.resolutions or space.resolutions, n=4
    )


def lut_for(space: SpaceSpec, *, lut: Path | None, device: str) -> tuple[Any, str | None]:
    """(LUT, its path) for `device` and `space`, or (None, None) when no table exists for them (a warning, not an
    error: the export still runs, with the predicted latency left empty)."""
    from hwnas.latency.lut import load_lut, lut_path
    from hwnas.latency.profiles import profiles_dir

    path = lut if lut is not None else lut_path(profiles_dir().parent / "latency_tables", Path(device).stem, space)
    if lut is None and not path.is_file():
        log.warning(
            "no LUT at %s: predicted latency left empty (run 'hwnas profile --device %s --space %s')",
            path,
            device,
            space.name,
        )
        return None, None
    table = load_lut(path, space=space)
    if table.device != Path(device).stem:
        raise HwnasError(
            f"LUT {path} was measured on {table.device!r}, but latency is measured on {device!r}; "
            f"pass --device {table.device} or a LUT for {device}"
        )
    return table, str(path)


def predicted_ms_for(space: SpaceSpec, arch: Arch, *, lut: Path | None, device: str) -> tuple[float | None, str | None]:
    """(calibrated LUT prediction, LUT path), or (None, None) when no table exists for this device and space."""
    from hwnas.latency.predictor import predict_ms

    table, path = lut_for(space, lut=lut, device=device)
    return (None, None) if table is None else (predict_ms(table, space, arch), path)


def _rel_error(predicted: float | None, measured: float | None) -> float | None:
    return None if not (predicted and measured) else round(predicted / measured - 1, 4)


# ---- pipeline ----------------------------------------------------------------------------------------------------------


class _AtResolution(torch.nn.Module):
    """`model` fed its batches resized to `resolution` (the fine-tune's batches come at the data's own size)."""

    def __init__(self, model: torch.nn.Module, resolution: int) -> None:
        super().__init__()
        self.model, self.resolution = model, resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from hwnas.data import resize

        return self.model(resize(x, self.resolution))  # type: ignore[no-any-return]


def kd_teacher(supernet: Any, space: SpaceSpec, train: Any, *, batch_size: int, seed: int, recalib_batches: int) -> Any:
    """The fine-tune's teacher: the supernet's largest subnet at the space's largest resolution, BN re-estimated for it.

    Why that resolution and not the student's: sandwich training (BigNAS) trains the largest subnet only at the largest
    resolution, so at a smaller one it is a poor teacher; and the stored BN statistics belong to whatever subnet was
    evaluated last. Measured on a `mbv3-tiny` BigNAS run (2.3 epochs, Fashion-MNIST test split): the largest subnet at
    24 px scored 62.4% with the stored statistics and 86.0% re-estimated — below the 88.7% of the small student it
    was teaching — and 91.2% at 32 px. Returns a callable on batches of any size (each is resized for the teacher).
    """
    from hwnas.data import batches, resize
    from hwnas.train.evaluate import recalibrate_bn

    arch = largest(space)
    gen = torch.Generator().manual_seed(seed + 7)
    recalibrate_bn(
        supernet,
        (x for x, _ in batches(train, batch_size=batch_size, shuffle=True, generator=gen, limit=recalib_batches)),
        arch=arch,
    )
    supernet.eval()
    return lambda x: supernet(resize(x, arch.resolution), arch)


def _images(split: Any, n: int, *, resolution: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from hwnas.data import batches

    xs, ys = [], []
    for x, y in batches(split, batch_size=batch_size, resolution=resolution, limit=(n + batch_size - 1) // batch_size):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def export_run(
    run_dir: str | os.PathLike[str],
    arch: Arch,
    out_dir: str | os.PathLike[str],
    *,
    cfg: ExportConfig = ExportConfig(),
    progress: bool = False,
    scaled: dict[str, Any] | None = None,
) -> ExportResult:
    """Run the whole export for `arch` of the supernet trained in `run_dir`; write files into `out_dir`.

    `scaled`: for a compound-scaled `arch`, the 'scaled' entry of its search.json (`read_scaled`); it needs
    `cfg.finetune.epochs >= MIN_SCALED_FINETUNE_EPOCHS`.
    """
    from hwnas.blocks import arch_macs, arch_params
    from hwnas.data import batches, load_run_dataset
    from hwnas.latency.profiles import load_profile
    from hwnas.search.scale import init_scaled_model, scaled_card, scaled_from_meta, scaled_latency_ms
    from hwnas.supernet import extract
    from hwnas.train.checkpoint import load_run
    from hwnas.train.evaluate import recalibrate_bn

    started = time.monotonic()
    if scaled is not None and cfg.finetune.epochs < MIN_SCALED_FINETUNE_EPOCHS:
        raise HwnasError(
            f"{arch} is a compound-scaled arch outside the trained supernet: its accuracy comes from a "
            f"fine-tune; pass --finetune-epochs N with N >= {MIN_SCALED_FINETUNE_EPOCHS} (default for "
            f"scaled archs {SCALED_FINETUNE_EPOCHS})"
        )
    profile = load_profile(cfg.device) if cfg.measure else None
    if profile is not None and profile.dtype == "int8" and not cfg.int8:
        raise HwnasError(f"device profile {profile.name} times int8 models; add --int8 (or use an fp32 profile)")
    run = load_run(Path(run_dir))
    space: SpaceSpec = run.space  # the supernet's; `model_space` is the exported model's (the scaled space, if scaled)
    scaled_arch = None if scaled is None else scaled_from_meta(scaled, space, where="the scale search result")
    if scaled_arch is not None and scaled_arch.arch != arch:
        raise HwnasError(
            f"{arch} is not the scaled arch {scaled_arch.arch} its search result describes; pass the "
            "search.json with --search"
        )
    model_space = space if scaled_arch is None else scaled_arch.space
    check_arch(model_space, arch)
    res = arch.resolution
    dataset = load_run_dataset(
        run.dataset,
        cfg.data_dir or run.data_dir,
        val_size=run.config.val_size,
        seed=run.config.seed,
        resolution=res,
        num_classes=space.num_classes,
        train_images=max(cfg.recalib_batches * cfg.batch_size, cfg.calib_images),
        val_images=cfg.test_images or 10_000,
        progress=progress,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(cfg.seed)

    # 1. extract + BN recalibration: the supernet's running stats belong to no particular subnet.
    if scaled_arch is None:
        model = extract(run.supernet, arch)
    else:  # base arch's weights in the leading channels, added layers as identities
        model = init_scaled_model(run.supernet, scaled_arch)
    recalibrate_bn(
        model,
        (
            x
            for x, _ in batches(
                dataset.train,
                batch_size=cfg.batch_size,
                resolution=res,
                shuffle=True,
                generator=gen,
                limit=cfg.recalib_batches,
            )
        ),
    )
    model.eval()
    log.info("extracted %s and recalibrated BN on %d train batches", arch, cfg.recalib_batches)

    # 2. optional fine-tune with KD from the supernet's largest subnet (`kd_teacher`).
    if cfg.finetune.epochs:
        teacher = kd_teacher(
            run.supernet,
            space,
            dataset.train,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            recalib_batches=cfg.recalib_batches,
        )
        steps = len(dataset.train) // cfg.batch_size

        def epoch_batches(epoch: int) -> Any:  # at the data's own resolution: student and teacher each resize
            g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 1)
            return batches(
                dataset.train,
                batch_size=cfg.batch_size,
                augment=run.config.augment,
                shuffle=True,
                generator=g,
                drop_last=True,
            )

        finetune_kd(
            _AtResolution(model, res),
            teacher,
            epoch_batches,
            cfg=cfg.finetune,
            steps_per_epoch=steps,
            progress=progress,
        )
        recalibrate_bn(
            model,
            (
                x
                for x, _ in batches(
                    dataset.train,
                    batch_size=cfg.batch_size,
                    resolution=res,
                    shuffle=True,
                    generator=gen,
                    limit=cfg.recalib_batches,
                )
            ),
        )
        model.eval()

    # 3. test accuracy of the torch model (the same tensors are fed to ORT below).
    n_test = len(dataset.test) if cfg.test_images is None else min(cfg.test_images, len(dataset.test))
    test_x, test_y = _images(dataset.test, n_test, resolution=res, batch_size=512)
    with torch.no_grad():
        test_acc = float(
            sum(int((model(test_x[i : i + 500]).argmax(1) == test_y[i : i + 500]).sum()) for i in range(0, n_test, 500))
            / n_test
        )
    log.info("test accuracy (torch, %d images): %.4f", n_test, test_acc)

    # 4. ONNX + checker (inside export_onnx) + 5. parity on real test images.
    onnx_path = export_onnx(
        model,
        out / "model.onnx",
        space=model_space,
        arch=arch,
        metadata={"hwnas.dataset": dataset.name, "hwnas.test_acc": f"{test_acc:.6f}"},
    )
    parity_x, _ = _images(dataset.test, cfg.parity_images, resolution=res, batch_size=cfg.batch_size)
    parity = check_parity(model, onnx_path, parity_x)
    log.info(
        "parity on %d test images: max |diff| %.2e, top-1 agreement %.2f%%",
        parity.n_images,
        parity.max_abs_diff,
        100 * parity.top1_agreement,
    )
    if parity.max_abs_diff > PARITY_MAX_ABS_DIFF or parity.top1_agreement < 1.0:
        raise HwnasError(
            f"ONNX parity failed for {arch}: max |diff| {parity.max_abs_diff:.2e} (limit "
            f"{PARITY_MAX_ABS_DIFF:.0e}), top-1 agreement {parity.top1_agreement:.4f}; report this as a bug"
        )

    # 6. optional int8: calibrated on train images, evaluated on the whole test split.
    int8_path, int8_acc = None, None
    if cfg.int8:
        calib_x, _ = _images(dataset.train, cfg.calib_images, resolution=res, batch_size=cfg.batch_size)
        int8_path = quantize_int8(onnx_path, out / "model.int8.onnx", calib_x.numpy())
        int8_acc = onnx_accuracy(int8_path, test_x, test_y)
        log.info("int8 test accuracy: %.4f (fp32 %.4f)", int8_acc, test_acc)
    elif (out / "model.int8.onnx").exists():
        (out / "model.int8.onnx").unlink()  # a stale int8 file from an earlier export would contradict the card
    onnx_acc = onnx_accuracy(onnx_path, test_x, test_y)

    # 7. latency: measured on the profile, predicted from the LUT.
    shape = (1, space.in_channels, res, res)
    from hwnas.latency.predictor import predict_ms

    table, lut_used = lut_for(space, lut=cfg.lut, device=cfg.device)
    if table is None:
        predicted = None
    elif scaled_arch is None:
        predicted = predict_ms(table, space, arch)
    else:  # the LUT plus the rows the scale search timed for it (`hwnas.latency.extra_rows`)
        predicted = scaled_latency_ms(table, Path(str(lut_used)), model_space, arch)
    measured = int8_measured = speed = None
    if profile is not None:
        shape = (profile.batch, space.in_channels, res, res)
        files = [onnx_path] + ([int8_path] if int8_path is not None else [])
        ms, speed = measure_exported(
            files, shape, profile, space=space, references=drift_references(table, space, arch, profile=profile)
        )
        measured, int8_measured = ms[onnx_path], None if int8_path is None else ms[int8_path]
        log.info(
            "latency on %s: measured %.4f ms, predicted %s ms%s%s",
            profile.name,
            measured,
            "n/a" if predicted is None else f"{predicted:.4f}",
            "" if int8_measured is None else f", int8 measured {int8_measured:.4f} ms",
            "" if speed is None else f"; machine runs x{speed:.3f} the LUT's build-time latency",
        )

    # 7b. optional ExecuTorch .pte: parity on the same images, measured vs predicted on the executorch profile.
    pte_card = None
    if cfg.pte:
        from hwnas.export.pte import export_pte_checked

        pte_card = export_pte_checked(
            model, out, space=model_space, arch=arch, images=parity_x, device=cfg.pte_device if cfg.measure else None
        ).card()
    elif (out / "model.pte").exists():
        (out / "model.pte").unlink()  # a stale .pte from an earlier export would contradict the card

    # 8. model card.
    card = build_model_card(
        space=model_space,
        arch=arch,
        dataset=dataset.name,
        preprocess=make_preprocess(dataset.preprocess, resolution=res),
        accuracy={
            "test_acc": test_acc,
            "onnx_test_acc": onnx_acc,
            "int8_test_acc": int8_acc,
            "int8_drop_pp": None if int8_acc is None else round(100 * (test_acc - int8_acc), 3),
            "split": "test",
            "n_images": n_test,
        },
        latency={
            "device": None if profile is None else profile.name,
            "batch": shape[0],
            "predicted_ms": predicted,
            "measured_ms": measured,
            "int8_measured_ms": int8_measured,
            "int8_speedup": None if not (measured and int8_measured) else round(measured / int8_measured, 3),
            "predicted_dtype": None if profile is None else profile.dtype,  # the LUT predicts this model
            "predicted_error": _rel_error(
                predicted, int8_measured if profile is not None and profile.dtype == "int8" else measured
            ),
            # the LUT's reference subnets re-timed beside the model: how much slower (> 1) the machine runs
            # than when the table was built, and the prediction's error once that drift is taken out
            "machine_speed_factor": None if speed is None else round(speed, 4),
            "predicted_error_drift_corrected": None
            if speed is None or predicted is None
            else _rel_error(predicted * speed, measured),
            "lut": lut_used,
            "profile": None if profile is None else profile.to_dict(),
        },
        cost={"macs": arch_macs(model_space, arch), "params": arch_params(model_space, arch)},
        files={"onnx": onnx_path, "int8": int8_path},
        parity={
            "max_abs_diff": parity.max_abs_diff,
            "mean_abs_diff": parity.mean_abs_diff,
            "top1_agreement": parity.top1_agreement,
            "n_images": parity.n_images,
            "checker": "passed",
            "opset": OPSET,
        },
        training={
            "run": str(Path(run_dir)),
            "finetune_epochs": cfg.finetune.epochs,
            "recalib_batches": cfg.recalib_batches,
            "int8_calib_images": cfg.calib_images if cfg.int8 else None,
            "export_seconds": round(time.monotonic() - started, 1),
        },
    )
    if pte_card is not None:
        card["pte"] = pte_card
    if scaled is not None:
        card["scaled"] = scaled_card(scaled, finetune_epochs=cfg.finetune.epochs)
        card["accuracy"]["source"] = card["scaled"]["accuracy_source"]
    card_path = write_model_card(out / "model_card.json", card)
    return ExportResult(
        out_dir=out,
        onnx=onnx_path,
        card=card_path,
        int8_onnx=int8_path,
        arch=arch,
        test_acc=test_acc,
        int8_test_acc=int8_acc,
        parity=parity,
        predicted_ms=predicted,
        measured_ms=measured,
        int8_measured_ms=int8_measured,
        pte=pte_card,
        machine_speed_factor=None if speed is None else round(speed, 4),
        scaled=card.get("scaled"),
    )
