"""The export pipeline: trained supernet + arch → verified ONNX (and int8) files with a model card.

extract → BN recalibration → optional KD fine-tune → test accuracy → ONNX (opset `OPSET`, dynamic batch) → onnx.checker →
onnxruntime parity on real test images → optional static int8 with its accuracy → latency of the exported files measured
with the device profile's protocol, next to the LUT prediction → model_card.json. Every file is written atomically; a
failed step leaves no half-written outputs behind.

Two devices take part: the torch device (`ExportConfig.device`, `hwnas export --device cpu|cuda|cuda:N`) runs the
BN recalibration, the fine-tune, the test accuracy and the float32 torch reference of the parity checks (TF32 off);
the latency profile (`ExportConfig.target`, `--target`) says where and how the exported files are timed — ONNX files
always on that profile's runtime, never on the torch device. The files are traced from a CPU copy of the model.

A compound-scaled arch (`hwnas search --strategy scale`) is outside the trained supernet: its model is built in the
scaled space and initialised from the supernet's weights of the base arch (`hwnas.search.scale.init_scaled_model`),
then the KD fine-tune is required (at least `MIN_SCALED_FINETUNE_EPOCHS`), since its accuracy comes from it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.export.card import build_model_card, make_preprocess, write_model_card
from hwnas.export.finetune import AtResolution, FinetuneConfig, finetune_kd, kd_teacher
from hwnas.export.int8 import quantize_int8
from hwnas.export.latency import drift_references, lut_for, measure_exported, predicted_ms_for, rel_error
from hwnas.export.onnx import OPSET, export_onnx
from hwnas.export.parity import ParityResult, check_parity, onnx_accuracy, require_parity, torch_logits
from hwnas.export.search_file import arch_from_search, read_scaled, read_search
from hwnas.space import Arch, SpaceSpec, check_arch

__all__ = [
    "check_torch_device",
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


def check_torch_device(text: str) -> str:
    """`text` if it is a torch device spec (cpu, cuda, cuda:N); otherwise an error that points what is most likely a
    latency profile name to `--target`, the flag that takes one."""
    from hwnas.distributed import check_device_spec

    try:
        return check_device_spec(text)
    except HwnasError:
        raise HwnasError(f"--device takes cpu, cuda or cuda:N; the latency profile is --target {text}") from None


@dataclass(frozen=True, slots=True)
class ExportConfig:
    finetune: FinetuneConfig = FinetuneConfig()
    int8: bool = False
    target: str = "cpu-ort-1t"  # latency profile (name or YAML path) the exported files are timed on
    lut: Path | None = None  # LUT for the predicted latency (None: latency_tables/<target>/<space>.csv if present)
    parity_images: int = 1000
    test_images: int | None = None  # None: the whole test split (first N test images otherwise, for quick checks)
    calib_images: int = 512  # train images for int8 calibration
    recalib_batches: int = 20  # train batches for BN recalibration
    batch_size: int = 128
    seed: int = 0
    measure: bool = True  # time the exported files (skip in tests that only check files)
    pte: bool = False  # also write model.pte (ExecuTorch + XNNPACK; needs hwnas[mobile])
    pte_target: str = "cpu-et-xnnpack-1t"  # executorch profile the .pte is timed on
    data_dir: Path | None = None  # the run's data folder, if not the one it recorded (required for imported runs)
    device: str | None = None  # torch device: cpu, cuda or cuda:N (None: cuda when available, else cpu)

    def __post_init__(self) -> None:
        if self.device is not None:
            check_torch_device(self.device)
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
    torch_device: str = "cpu"  # where the fine-tune, test accuracy and parity reference ran

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
            "torch_device": self.torch_device,
        }


# ---- the steps of an export ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What every step of one export reads: the run, the model's space and arch, the data and the profile."""

    run: Any  # hwnas.train.checkpoint.LoadedRun
    space: SpaceSpec  # the supernet's
    model_space: SpaceSpec  # the exported model's (the scaled space for a compound-scaled arch)
    arch: Arch
    scaled_arch: Any  # hwnas.search.scale.ScaledArch or None
    dataset: Any  # hwnas.data.Dataset
    profile: Any  # DeviceProfile or None (not measuring)
    cfg: ExportConfig
    out: Path
    device: torch.device  # the torch device of recalibration, fine-tune, test accuracy and parity reference

    @property
    def resolution(self) -> int:
        return self.arch.resolution

    def train_batches(self, generator: torch.Generator) -> Any:
        from hwnas.data import batches

        cfg = self.cfg
        return (
            x
            for x, _ in batches(
                self.dataset.train,
                batch_size=cfg.batch_size,
                resolution=self.resolution,
                shuffle=True,
                generator=generator,
                device=self.device,
                limit=cfg.recalib_batches,
            )
        )


def _open(
    run_dir: Path, arch: Arch, out_dir: Path, cfg: ExportConfig, scaled: dict[str, Any] | None, progress: bool
) -> _Job:
    """Check the inputs, load the run and the data: everything that can fail on bad input, before a file is written."""
    from hwnas.data import load_run_dataset
    from hwnas.distributed import resolve_device
    from hwnas.latency.profiles import load_profile
    from hwnas.search.scale import scaled_from_meta
    from hwnas.train.checkpoint import load_run

    if scaled is not None and cfg.finetune.epochs < MIN_SCALED_FINETUNE_EPOCHS:
        raise HwnasError(
            f"{arch} is a compound-scaled arch outside the trained supernet: its accuracy comes from a "
            f"fine-tune; pass --finetune-epochs N with N >= {MIN_SCALED_FINETUNE_EPOCHS} (default for "
            f"scaled archs {SCALED_FINETUNE_EPOCHS})"
        )
    profile = load_profile(cfg.target) if cfg.measure else None
    if profile is not None and profile.dtype == "int8" and not cfg.int8:
        raise HwnasError(f"latency profile {profile.name} times int8 models; add --int8 (or use an fp32 profile)")
    device = resolve_device(cfg.device)
    run = load_run(run_dir, device=device)
    space: SpaceSpec = run.space
    scaled_arch = None if scaled is None else scaled_from_meta(scaled, space, where="the scale search result")
    if scaled_arch is not None and scaled_arch.arch != arch:
        raise HwnasError(
            f"{arch} is not the scaled arch {scaled_arch.arch} its search result describes; pass the "
            "search.json with --search"
        )
    model_space = space if scaled_arch is None else scaled_arch.space
    check_arch(model_space, arch)
    dataset = load_run_dataset(
        run.dataset,
        cfg.data_dir or run.data_dir,
        val_size=run.config.val_size,
        seed=run.config.seed,
        resolution=arch.resolution,
        num_classes=space.num_classes,
        train_images=max(cfg.recalib_batches * cfg.batch_size, cfg.calib_images),
        val_images=cfg.test_images or 10_000,
        progress=progress,
    )
    return _Job(run, space, model_space, arch, scaled_arch, dataset, profile, cfg, out_dir, device)


def _prepare_model(job: _Job, progress: bool) -> nn.Module:
    """Steps 1–2: the subnet's weights (extracted, or a scaled model initialised from them), BN re-estimated for it
    (the supernet's running statistics belong to no particular subnet), then the optional KD fine-tune from the
    supernet's largest subnet (`kd_teacher`) and BN re-estimated again."""
    from hwnas.data import batches
    from hwnas.search.scale import init_scaled_model
    from hwnas.supernet import extract
    from hwnas.train.evaluate import recalibrate_bn

    cfg, run, res = job.cfg, job.run, job.resolution
    gen = torch.Generator().manual_seed(cfg.seed)
    if job.scaled_arch is None:
        model = extract(run.supernet, job.arch)
    else:  # base arch's weights in the leading channels, added layers as identities
        model = init_scaled_model(run.supernet, job.scaled_arch)
    recalibrate_bn(model, job.train_batches(gen))
    log.info("extracted %s and recalibrated BN on %d train batches", job.arch, cfg.recalib_batches)
    if not cfg.finetune.epochs:
        return model.eval()
    teacher = kd_teacher(
        run.supernet,
        job.space,
        job.dataset.train,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        recalib_batches=cfg.recalib_batches,
        device=job.device,
    )

    def epoch_batches(epoch: int) -> Any:  # at the data's own resolution: student and teacher each resize
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 1)
        return batches(
            job.dataset.train,
            batch_size=cfg.batch_size,
            augment=run.config.augment,
            shuffle=True,
            generator=g,
            drop_last=True,
            device=job.device,
        )

    finetune_kd(
        AtResolution(model, res),
        teacher,
        epoch_batches,
        cfg=cfg.finetune,
        steps_per_epoch=len(job.dataset.train) // cfg.batch_size,
        progress=progress,
    )
    recalibrate_bn(model, job.train_batches(gen))
    return model.eval()


def _images(split: Any, n: int, *, resolution: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from hwnas.data import batches

    xs, ys = [], []
    for x, y in batches(split, batch_size=batch_size, resolution=resolution, limit=(n + batch_size - 1) // batch_size):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def _test_accuracy(job: _Job, model: nn.Module) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Step 3: top-1 of the torch model (float32 on the torch device) on the test split (the same CPU tensors are fed
    to ORT and int8 later)."""
    test = job.dataset.test
    n_test = len(test) if job.cfg.test_images is None else min(job.cfg.test_images, len(test))
    test_x, test_y = _images(test, n_test, resolution=job.resolution, batch_size=512)
    logits = torch_logits(model, test_x, batch_size=500)
    test_acc = float((logits.argmax(1) == test_y.numpy()).mean())
    log.info("test accuracy (torch on %s, %d images): %.4f", job.device, n_test, test_acc)
    return test_acc, test_x, test_y


def _onnx_with_parity(job: _Job, model: nn.Module, test_acc: float) -> tuple[Path, ParityResult, torch.Tensor]:
    """Steps 4–5: ONNX (checked by `onnx.checker` inside `export_onnx`), then ORT vs torch on real test images."""
    cfg = job.cfg
    onnx_path = export_onnx(
        model,
        job.out / "model.onnx",
        space=job.model_space,
        arch=job.arch,
        metadata={"hwnas.dataset": job.dataset.name, "hwnas.test_acc": f"{test_acc:.6f}"},
    )
    parity_x, _ = _images(job.dataset.test, cfg.parity_images, resolution=job.resolution, batch_size=cfg.batch_size)
    parity = check_parity(model, onnx_path, parity_x)
    require_parity(parity, what="ONNX", arch=job.arch, limit=PARITY_MAX_ABS_DIFF)
    return onnx_path, parity, parity_x


def _int8(job: _Job, onnx_path: Path, test_x: torch.Tensor, test_y: torch.Tensor) -> tuple[Path | None, float | None]:
    """Step 6: optional static int8, calibrated on train images, evaluated on the same test images."""
    stale = job.out / "model.int8.onnx"
    if not job.cfg.int8:
        stale.unlink(missing_ok=True)  # an int8 file from an earlier export would contradict the card
        return None, None
    calib_x, _ = _images(
        job.dataset.train, job.cfg.calib_images, resolution=job.resolution, batch_size=job.cfg.batch_size
    )
    int8_path = quantize_int8(onnx_path, stale, calib_x.numpy())
    int8_acc = onnx_accuracy(int8_path, test_x, test_y)
    log.info("int8 test accuracy: %.4f", int8_acc)
    return int8_path, int8_acc


@dataclass(frozen=True, slots=True)
class _Latency:
    predicted: float | None
    measured: float | None
    int8_measured: float | None
    speed: float | None  # machine speed factor from the LUT's reference subnets (> 1: slower than at its build)
    lut: str | None
    batch: int


def _latency(job: _Job, onnx_path: Path, int8_path: Path | None) -> _Latency:
    """Step 7: the exported files timed on the profile beside the LUT's drift references; the LUT's prediction."""
    from hwnas.latency.predictor import predict_ms
    from hwnas.search.scale import scaled_latency_ms

    space, arch, profile = job.space, job.arch, job.profile
    table, lut_used = lut_for(space, lut=job.cfg.lut, target=job.cfg.target)
    if table is None:
        predicted = None
    elif job.scaled_arch is None:
        predicted = predict_ms(table, space, arch)
    else:  # the LUT plus the rows the scale search timed for it (`hwnas.latency.extra_rows`)
        predicted = scaled_latency_ms(table, Path(str(lut_used)), job.model_space, arch)
    if profile is None:
        return _Latency(predicted, None, None, None, lut_used, 1)
    shape = (profile.batch, space.in_channels, arch.resolution, arch.resolution)
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
    return _Latency(predicted, measured, int8_measured, speed, lut_used, profile.batch)


def _pte(job: _Job, model: nn.Module, parity_x: torch.Tensor) -> dict[str, Any] | None:
    """Step 7b: optional ExecuTorch .pte with parity on the same images and its latency on the executorch profile."""
    if not job.cfg.pte:
        (job.out / "model.pte").unlink(missing_ok=True)  # a .pte from an earlier export would contradict the card
        return None
    from hwnas.export.pte import export_pte_checked

    target = job.cfg.pte_target if job.cfg.measure else None
    return export_pte_checked(
        model, job.out, space=job.model_space, arch=job.arch, images=parity_x, target=target
    ).card()


def _card(
    job: _Job,
    *,
    run_dir: Path,
    test_acc: float,
    onnx_acc: float,
    n_test: int,
    int8_path: Path | None,
    int8_acc: float | None,
    onnx_path: Path,
    parity: ParityResult,
    lat: _Latency,
    pte_card: dict[str, Any] | None,
    scaled: dict[str, Any] | None,
    seconds: float,
) -> tuple[Path, dict[str, Any]]:
    """Step 8: model_card.json (written) and its contents."""
    from hwnas.blocks import arch_macs, arch_params

    cfg, profile, arch, speed = job.cfg, job.profile, job.arch, lat.speed
    timed = lat.int8_measured if profile is not None and profile.dtype == "int8" else lat.measured
    card = build_model_card(
        space=job.model_space,
        arch=arch,
        dataset=job.dataset.name,
        preprocess=make_preprocess(job.dataset.preprocess, resolution=arch.resolution),
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
            "batch": lat.batch,
            "predicted_ms": lat.predicted,
            "measured_ms": lat.measured,
            "int8_measured_ms": lat.int8_measured,
            "int8_speedup": None
            if not (lat.measured and lat.int8_measured)
            else round(lat.measured / lat.int8_measured, 3),
            "predicted_dtype": None if profile is None else profile.dtype,  # the LUT predicts this model
            "predicted_error": rel_error(lat.predicted, timed),
            # the LUT's reference subnets re-timed beside the model: how much slower (> 1) the machine runs
            # than when the table was built, and the prediction's error once that drift is taken out
            "machine_speed_factor": None if speed is None else round(speed, 4),
            "predicted_error_drift_corrected": None
            if speed is None or lat.predicted is None
            else rel_error(lat.predicted * speed, lat.measured),
            "lut": lat.lut,
            "profile": None if profile is None else profile.to_dict(),
        },
        cost={"macs": arch_macs(job.model_space, arch), "params": arch_params(job.model_space, arch)},
        files={"onnx": onnx_path, "int8": int8_path},
        parity={
            "max_abs_diff": parity.max_abs_diff,
            "mean_abs_diff": parity.mean_abs_diff,
            "top1_agreement": parity.top1_agreement,
            "n_images": parity.n_images,
            "checker": "passed",
            "opset": OPSET,
            "torch_device": str(job.device),  # where the float32 reference ran (TF32 off on CUDA)
        },
        training={
            "run": str(run_dir),
            "finetune_epochs": cfg.finetune.epochs,
            "recalib_batches": cfg.recalib_batches,
            "torch_device": str(job.device),  # where BN recalibration and the fine-tune ran
            "int8_calib_images": cfg.calib_images if cfg.int8 else None,
            "export_seconds": round(seconds, 1),
        },
    )
    if pte_card is not None:
        card["pte"] = pte_card
    if scaled is not None:
        from hwnas.search.scale import scaled_card

        card["scaled"] = scaled_card(scaled, finetune_epochs=cfg.finetune.epochs)
        card["accuracy"]["source"] = card["scaled"]["accuracy_source"]
    return write_model_card(job.out / "model_card.json", card), card


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
    started = time.monotonic()
    job = _open(Path(run_dir), arch, Path(out_dir), cfg, scaled, progress)
    job.out.mkdir(parents=True, exist_ok=True)
    model = _prepare_model(job, progress)
    test_acc, test_x, test_y = _test_accuracy(job, model)
    onnx_path, parity, parity_x = _onnx_with_parity(job, model, test_acc)
    int8_path, int8_acc = _int8(job, onnx_path, test_x, test_y)
    onnx_acc = onnx_accuracy(onnx_path, test_x, test_y)
    lat = _latency(job, onnx_path, int8_path)
    pte_card = _pte(job, model, parity_x)
    card_path, card = _card(
        job,
        run_dir=Path(run_dir),
        test_acc=test_acc,
        onnx_acc=onnx_acc,
        n_test=int(test_y.numel()),
        int8_path=int8_path,
        int8_acc=int8_acc,
        onnx_path=onnx_path,
        parity=parity,
        lat=lat,
        pte_card=pte_card,
        scaled=scaled,
        seconds=time.monotonic() - started,
    )
    return ExportResult(
        out_dir=job.out,
        onnx=onnx_path,
        card=card_path,
        int8_onnx=int8_path,
        arch=arch,
        test_acc=test_acc,
        int8_test_acc=int8_acc,
        parity=parity,
        predicted_ms=lat.predicted,
        measured_ms=lat.measured,
        int8_measured_ms=lat.int8_measured,
        pte=pte_card,
        machine_speed_factor=None if lat.speed is None else round(lat.speed, 4),
        scaled=card.get("scaled"),
        torch_device=str(job.device),
    )
