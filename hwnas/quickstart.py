"""`hwnas quickstart` (what `make demo` runs): the three user jobs end to end on this machine and real Fashion-MNIST.

1. latency table for `cpu-ort-1t` and `mbv3-tiny`, profiled now (or a given one): the prediction is then checked
   against the machine as it runs today;
2. a weight-sharing supernet trained briefly (BigNAS sandwich rule with in-place distillation);
3. evolution search at a budget between the fastest and the slowest subnet the table predicts;
4. export of the winner: BN recalibration, a one-epoch KD fine-tune (the supernet's largest subnet teaching), ONNX,
   parity, int8, measured latency, model card.

Every stage is the library function the matching command runs (profile_space, train, evolve + SupernetScorer,
export_run); this module only sequences them, sized so the whole run takes minutes on 2 cores.

Two devices, as everywhere: `target` is the latency profile the table is built for and the exported files are timed
on (this machine's CPU); `device` is the torch device that trains, scores candidates and fine-tunes (cpu, cuda or
cuda:N; None: cuda when available), handed to each stage.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError
from hwnas.machine import cores_in_use

__all__ = ["QuickstartConfig", "QuickstartResult", "lut_matches_machine", "ensure_lut", "run_quickstart"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QuickstartConfig:
    out: Path = Path("runs/quickstart")
    target: str = "cpu-ort-1t"  # latency profile of the table and of the exported files' timing
    space: str = "mbv3-tiny"
    epochs: float = 1.0
    max_steps: int = 300  # batches of 64 (~0.35 epoch): enough for the search to rank subnets; 0: the whole `epochs`
    budget_fraction: float = 0.4  # where the budget sits between the fastest (0) and slowest (1) predicted subnet
    evaluations: int = 40  # measured search evaluations
    val_images: int = 2000
    int8: bool = True
    finetune_epochs: int = 2  # KD fine-tune of the winner before export (0: ship the extracted weights)
    seed: int = 0
    lut: Path | None = None  # a table to use as it is (default: profile one now)
    threads: int | None = None  # torch CPU threads (None: 2 on an idle 2-core machine, 1 when it is busy)
    device: str | None = None  # torch device of training, search scoring and export (None: cuda when available)

    def __post_init__(self) -> None:
        if self.device is not None:
            from hwnas.distributed import check_device_spec

            check_device_spec(self.device)
        if not 0.0 < self.budget_fraction < 1.0:
            raise HwnasError(f"budget_fraction must lie strictly between 0 and 1, got {self.budget_fraction}")
        if self.epochs <= 0 or self.max_steps < 0 or self.evaluations < 1 or self.finetune_epochs < 0:
            raise HwnasError(
                "quickstart needs epochs > 0, max_steps >= 0, finetune_epochs >= 0 and at least 1 search evaluation"
            )


@dataclass(frozen=True)
class QuickstartResult:
    lut: Path
    lut_reused: bool
    run_dir: Path
    search_json: Path
    budget_ms: float
    range_ms: tuple[float, float]
    search_accuracy: float
    export: Any  # hwnas.export.pipeline.ExportResult
    seconds: dict[str, float] = field(default_factory=dict)
    torch_device: str = "cpu"  # where training, search scoring and export ran

    def summary(self) -> dict[str, Any]:
        """The `hwnas quickstart --json` contract."""
        e = self.export
        error = None if not (e.predicted_ms and e.measured_ms) else e.measured_ms / e.predicted_ms - 1
        corrected = (
            None
            if not (e.predicted_ms and e.measured_ms and e.machine_speed_factor)
            else e.measured_ms / (e.predicted_ms * e.machine_speed_factor) - 1
        )
        return {
            "arch": str(e.arch),
            "budget_ms": self.budget_ms,
            "search_val_acc": self.search_accuracy,
            "test_acc": e.test_acc,
            "int8_test_acc": e.int8_test_acc,
            "predicted_ms": e.predicted_ms,
            "measured_ms": e.measured_ms,
            "int8_measured_ms": e.int8_measured_ms,
            "predicted_error": error,
            "machine_speed_factor": e.machine_speed_factor,
            "predicted_error_drift_corrected": corrected,
            "max_abs_diff": e.parity.max_abs_diff,
            "lut_reused": self.lut_reused,
            "torch_device": self.torch_device,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "files": {
                "lut": str(self.lut),
                "run": str(self.run_dir),
                "search": str(self.search_json),
                "onnx": str(e.onnx),
                "int8_onnx": None if e.int8_onnx is None else str(e.int8_onnx),
                "card": str(e.card),
            },
        }


def _stored_profile(meta: dict[str, Any]) -> Any:
    """The profile a table stores, with fields added since it was built at their defaults (so a new optional field
    does not make every older table look foreign); the raw value when it is not a valid profile."""
    from hwnas.latency.profiles import profile_from_dict

    try:
        return profile_from_dict(meta.get("profile"), where="LUT metadata").to_dict()
    except HwnasError:
        return meta.get("profile")


def lut_matches_machine(meta: dict[str, Any], *, space: Any, profile: Any) -> tuple[bool, str]:
    """Is a LUT's metadata this space, this block-graph revision, this profile and this machine (CPU model — and
    family/model/instruction sets where the table recorded them —, onnxruntime version)?"""
    from hwnas.latency.lut import graph_revision
    from hwnas.machine import other_cpu, package_versions
    from hwnas.space import GRAPH_REVISION, space_hash

    cpu = other_cpu(meta.get("cpu"), meta.get("cpu_signature"))
    checks = [
        ("space hash", (meta.get("space") or {}).get("hash"), space_hash(space)),
        ("block graph revision", graph_revision(meta), GRAPH_REVISION),
        ("profile", _stored_profile(meta), profile.to_dict()),
        *([cpu] if cpu else []),
        (
            "onnxruntime",
            (meta.get("versions") or {}).get("onnxruntime"),
            package_versions(("onnxruntime",))["onnxruntime"],
        ),
    ]
    for what, theirs, ours in checks:
        if theirs != ours:
            return False, f"{what} differs ({theirs!r} vs {ours!r})"
    return True, "same space, block graphs, profile, CPU and onnxruntime version"


def ensure_lut(
    space: Any, profile: Any, *, committed_dir: Path, out_dir: Path, progress: bool, reuse_profiled: bool = False
) -> tuple[Path, bool]:
    """The LUT to search with: the committed one if it matches this machine, else a fresh profile under `out_dir`
    (or, with `reuse_profiled`, the one an earlier call profiled there when it still matches: a resumed benchmark
    keeps the table its cached results were computed with). The flag returned says whether the committed one is used."""
    from hwnas.latency.lut import load_lut, lut_path
    from hwnas.latency.profiler import profile_space

    committed = lut_path(committed_dir, profile.name, space)
    if committed.is_file():
        table = load_lut(committed, space=space)
        ok, why = lut_matches_machine(table.meta, space=space, profile=profile)
        if ok:
            log.info("[1/4] reusing committed LUT %s (%s)", committed, why)
            return committed, True
        log.info("[1/4] committed LUT %s not reused: %s", committed, why)
    path = lut_path(out_dir, profile.name, space)
    if (
        reuse_profiled
        and path.is_file()
        and lut_matches_machine(load_lut(path, space=space).meta, space=space, profile=profile)[0]
    ):
        log.info("[1/4] reusing LUT %s profiled here earlier", path)
        return path, False
    log.info("[1/4] profiling %s on %s -> %s", space.name, profile.name, path)
    profile_space(space, profile, out_path=path, progress=progress)
    return path, False


def _search(
    space: Any, run_dir: Path, lut: Path, out_dir: Path, cfg: QuickstartConfig, *, progress: bool
) -> tuple[Path, float, tuple[float, float], float]:
    """Evolution under a budget `budget_fraction` of the way from the fastest to the slowest predicted subnet: the
    search `hwnas search --budget-ms B --evaluations N --seed S` runs (`hwnas.search.budgets`)."""
    from hwnas.distributed import resolve_device
    from hwnas.latency.lut import load_lut
    from hwnas.search import gene_latency_from_lut
    from hwnas.search.budgets import SearchPlan, search_budgets, search_context
    from hwnas.search.output import write_search_outputs
    from hwnas.search.scorer import ScorerConfig, scorer_for_run
    from hwnas.train.checkpoint import load_run

    table = load_lut(lut, space=space)
    latency = gene_latency_from_lut(table, space)
    lo, hi = latency.min_ms()[0], latency.max_ms()[0]
    budget = round(lo + cfg.budget_fraction * (hi - lo), 4)
    log.info(
        "[3/4] search: predicted latency spans %.4f–%.4f ms; budget %.4f ms, %d measured evaluations",
        lo,
        hi,
        budget,
        cfg.evaluations,
    )
    device = resolve_device(cfg.device)
    run = load_run(run_dir, space=space, device=device)  # the scorer extracts and evaluates on the run's device
    scorer = scorer_for_run(run, cfg=ScorerConfig(val_images=cfg.val_images, seed=cfg.seed))
    plan = SearchPlan(strategy="evolution", evaluations=cfg.evaluations, seed=cfg.seed, progress=progress)
    [result], _ = search_budgets(space, scorer, latency, [budget], plan=plan)
    context = {
        **search_context(
            seed=cfg.seed, run=run_dir, lut=lut, device=table.device, space=space, torch_device=str(device)
        ),
        "scorer": "measured",
        "extra": {"quickstart": True},
    }
    write_search_outputs([result], out_dir, context=context)
    log.info("[3/4] winner %s: predicted %.4f ms, val accuracy %.4f", result.arch, result.predicted_ms, result.accuracy)
    return out_dir / "search.json", budget, (lo, hi), result.accuracy


def run_quickstart(
    cfg: QuickstartConfig, *, train_fn: Callable[..., Path] | None = None, progress: bool = False
) -> QuickstartResult:
    """Run all four stages into `cfg.out` (lut/, run/, search.json, export/); returns what the summary needs."""
    import torch

    from hwnas.distributed import resolve_device
    from hwnas.export.pipeline import ExportConfig, export_run
    from hwnas.latency.profiles import load_profile
    from hwnas.space import get_space

    device = str(resolve_device(cfg.device))  # a missing GPU is a one-line error before anything is written
    torch.set_num_threads(cfg.threads or _threads())
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(cfg.space)
    profile = load_profile(cfg.target)
    seconds: dict[str, float] = {}

    t0 = time.monotonic()
    if cfg.lut is not None:
        from hwnas.latency.lut import load_lut

        load_lut(cfg.lut, space=space)  # a table of another space is an error before minutes of training
        lut, reused = cfg.lut, True
        log.info("[1/4] using the given LUT %s", lut)
    else:  # this machine as it runs today: a committed table of the same CPU may be days and a speed drift away
        from hwnas.latency.lut import lut_path
        from hwnas.latency.profiler import profile_space

        lut, reused = lut_path(out / "latency_tables", profile.name, space), False
        log.info("[1/4] profiling %s on %s -> %s", space.name, profile.name, lut)
        profile_space(space, profile, out_path=lut, progress=progress)
    seconds["latency table"] = time.monotonic() - t0

    t0 = time.monotonic()
    run_dir = out / "run"
    log.info(
        "[2/4] training a %s supernet on Fashion-MNIST (bignas, %g epochs%s) on %s -> %s",
        space.name,
        cfg.epochs,
        f", at most {cfg.max_steps} steps" if cfg.max_steps else "",
        device,
        run_dir,
    )
    train = train_fn if train_fn is not None else _train
    train(space, run_dir, epochs=cfg.epochs, max_steps=cfg.max_steps, seed=cfg.seed, progress=progress, device=device)
    seconds["train"] = time.monotonic() - t0

    t0 = time.monotonic()
    search_json, budget, span, search_acc = _search(
        space, run_dir, lut, out, dataclasses.replace(cfg, device=device), progress=progress
    )
    seconds["search"] = time.monotonic() - t0

    t0 = time.monotonic()
    from hwnas.export.finetune import FinetuneConfig
    from hwnas.export.pipeline import read_search
    from hwnas.space import Arch

    arch = Arch.parse(read_search(search_json)[0])
    log.info(
        "[4/4] exporting %s%s",
        arch,
        f" after a {cfg.finetune_epochs}-epoch KD fine-tune" if cfg.finetune_epochs else "",
    )
    export_cfg = ExportConfig(
        finetune=FinetuneConfig(epochs=cfg.finetune_epochs), int8=cfg.int8, target=cfg.target, device=device, lut=lut
    )
    result = export_run(run_dir, arch, out / "export", cfg=export_cfg, progress=progress)
    seconds["export"] = time.monotonic() - t0
    return QuickstartResult(
        lut=lut,
        lut_reused=reused,
        run_dir=run_dir,
        search_json=search_json,
        budget_ms=budget,
        range_ms=span,
        search_accuracy=search_acc,
        export=result,
        seconds=seconds,
        torch_device=device,
    )


def _threads() -> int:
    """2 torch threads on an idle 2-core machine; 1 when other processes already keep the cores busy: there, 2 OpenMP
    threads fighting them run far slower than 1. Busy = more than half the cores in use, read from /proc/stat over half
    a second before training starts (the 1-minute load average lags: right after another job ends it still reports
    busy cores and would pick 1 thread for a whole run on an idle machine); the load average where /proc/stat is
    missing."""
    cores = os.cpu_count() or 1
    used = cores_in_use(0.5)
    if used is None:
        used = os.getloadavg()[0]
    threads = 1 if used > 0.5 * cores or cores < 2 else 2
    log.info("torch threads: %d (%.1f of %d cores in use)", threads, used, cores)
    return threads


def _train(space: Any, run_dir: Path, *, epochs: float, max_steps: int, seed: int, progress: bool, device: str) -> Path:
    """BigNAS (sandwich rule + in-place distillation) on Fashion-MNIST via `hwnas.train.train`, on torch `device`
    (the default precision for it: bf16 autocast on CUDA, float32 on the CPU)."""
    from hwnas.train import TrainConfig, train

    cfg = TrainConfig(
        space=space.name,
        width=space.width,
        dataset="fashion-mnist",
        mode="bignas",
        epochs=epochs,
        max_steps=max_steps,
        seed=seed,
        val_size=5000,
        augment="none",
    )  # a short run: no augmentation
    result = train(cfg, run_dir, progress=progress, device=device)
    log.info(
        "[2/4] trained %d steps (%.2f epochs) in %.0f s, %.0f img/s; val accuracy largest %.4f, smallest %.4f",
        result.steps,
        result.epochs,
        result.train_s,
        result.img_per_s,
        result.val_acc_max,
        result.val_acc_min,
    )
    return run_dir
