"""Few-shot tables: a table for a device that only runs whole models, from a reference table and N whole subnets.

Why: some targets cannot time single blocks (an NPU behind a compiler that fuses the whole graph, a phone farm or a
service that takes whole models), but a table of the same space on another device or runtime (REF) knows the blocks.
What differs between two runtimes is mostly a few operator classes — XNNPACK runs large depthwise kernels several times
slower relative to the rest than onnxruntime does — so REF's rows, rescaled per class, rank the target's subnets far
better than FLOPs do, from a few dozen whole-model timings.

The model, per row r of REF (r at the results' resolutions):

    ms(r) = (g + Σ_terms δ_term[class_term(r)]) · ms_REF(r) + β[kernel(r)] · dw_mmacs(r)

- g: one global factor; δ: per-class deviations from it (classes by block kind, kernel, stage, kernel×stage);
- β: the target's extra cost per million depthwise multiply-accumulates, per kernel size (a term in the depthwise
  work itself, not in REF's ms: REF's row mixes the depthwise and pointwise convolutions, which runtimes treat apart).

Fitted to the N measured subnets (each the sum of its rows + one intercept) by least squares on relative errors, with
ridge shrinkage of every δ and β toward 0 (toward the global factor), its strength per term chosen by leave-one-out
error (closed form through the hat matrix). Candidate models (`CANDIDATES`, simplest first) are compared by that
leave-one-out error and the simplest within one standard error of the best is kept. The rescaled rows form a normal
LatencyTable; the usual calibration (`hwnas.latency.calibrate`, fitted on the same N subnets) then turns row sums
into whole-model predictions. Which candidates made the list was measured: bench/bench_device.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.harness import TimingStats
from hwnas.latency.lut import LatencyTable
from hwnas.space import Arch, BlockSpec, SpaceSpec, blocks_of, distinct_blocks, first_block, space_hash

__all__ = [
    "CANDIDATES",
    "FewShotFit",
    "RowClass",
    "row_classes",
    "check_reference",
    "fit_fewshot",
    "scaled_rows",
    "fewshot_table",
    "MIN_SUBNETS",
]

# (name, terms), simplest first: the 1-SE rule keeps the first within one standard error of the best
CANDIDATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("global", ()),
    ("kernel", ("kernel",)),
    ("depthwise", ("depthwise",)),
    ("kernel+stage", ("kernel", "kernel_stage")),
    ("depthwise+stage", ("depthwise", "stage")),
    ("depthwise+kernel+stage", ("depthwise", "kernel", "kernel_stage")),
)
LAMBDA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1e4)  # shrinkage strengths tried per term (relative to a term's share)
ROW_FLOOR = 0.1  # no row below this × its REF ms × the overall target/REF ratio: an implausibly cheap block is noise
PIN_WEIGHT = 100.0  # weight of a row held at its floor, against 1 for a subnet's relative error
MIN_SUBNETS = 4  # fewer whole subnets cannot tell any class apart from the global factor and the intercept
FORM = (
    "ms = (global + deviation of the row's classes) * reference ms + depthwise_ms_per_mmac[kernel] * depthwise MMACs, "
    "then the usual calibration"
)


@dataclass(frozen=True, slots=True)
class RowClass:
    """What a row is, for the few-shot classes: block kind, and for MBConv layers kernel, expand and stage."""

    kind: str  # stem | first | ir | head
    kernel: int = 0
    expand: int = 0
    stage: int = -1

    def label(self, term: str) -> str | None:
        """The row's class under `term`, None where the term does not apply (e.g. kernel of the stem)."""
        if term == "kind":
            return None if self.kind == "ir" else "fixed"
        if self.kind != "ir":
            return None
        return {
            "kernel": f"k{self.kernel}",
            "stage": f"s{self.stage}",
            "kernel_stage": f"k{self.kernel}s{self.stage}",
        }[term]


def row_classes(space: SpaceSpec, resolutions: Sequence[int]) -> dict[str, tuple[BlockSpec, RowClass]]:
    """Every row a table of `space` at `resolutions` has (`distinct_blocks`), with its class; an MBConv layer's stage
    is the stage of its width."""
    out: dict[str, tuple[BlockSpec, RowClass]] = {}
    widths = [stage.out_ch for stage in space.stages]
    for res, specs in distinct_blocks(space, tuple(resolutions)).items():
        first = first_block(space, res)
        for spec in specs:
            if spec.op != "ir":
                cls = RowClass("stem" if spec.op == "conv" else "head")
            elif spec == first:
                cls = RowClass("first")
            else:
                cls = RowClass("ir", spec.kernel, spec.expand, widths.index(spec.out_ch))
            out[spec.key] = (spec, cls)
    return out


def depthwise_mmacs(spec: BlockSpec) -> float:
    """Multiply-accumulates (millions) of an MBConv block's depthwise convolution; 0 for other blocks."""
    return spec.mid_ch * spec.kernel**2 * spec.out_hw**2 / 1e6 if spec.op == "ir" else 0.0


@dataclass(frozen=True, slots=True)
class FewShotFit:
    """The chosen model: its name and terms, per-term shrinkage, coefficients by column name, leave-one-out error."""

    model: str
    terms: tuple[str, ...]
    lambdas: dict[str, float]
    coef: dict[str, float]  # "global", "<term>:<class>" deviations, "depthwise:k<k>" ms per MMAC, "intercept"
    cv_mape: float
    cv_se: float
    subnets: int
    candidates: tuple[dict[str, Any], ...]

    def row_ms(self, ref_ms: float, spec: BlockSpec, cls: RowClass) -> float:
        factor = self.coef["global"]
        for term in ("kind", *self.terms):
            label = cls.label(term) if term != "depthwise" else None
            if label is not None:
                factor += self.coef.get(f"{term}:{label}", 0.0)
        extra = self.coef.get(f"depthwise:k{cls.kernel}", 0.0) * depthwise_mmacs(spec) if cls.kind == "ir" else 0.0
        return factor * ref_ms + extra

    def to_meta(self) -> dict[str, Any]:
        factors = {"global": self.coef["global"]}
        factors.update({k: self.coef["global"] + v for k, v in self.coef.items() if ":" in k and "depthwise" not in k})
        return {
            "model": self.model,
            "form": FORM,
            "subnets": self.subnets,
            "terms": list(self.terms),
            "lambdas": self.lambdas,
            "factors": {k: round(v, 6) for k, v in factors.items()},
            "depthwise_ms_per_mmac": {
                k.split(":")[1]: round(v, 6) for k, v in self.coef.items() if k.startswith("depthwise:")
            },
            "intercept_ms": round(self.coef["intercept"], 6),
            "cv": {"method": "leave-one-out", "mape": round(self.cv_mape, 6), "se": round(self.cv_se, 6)},
            "candidates": list(self.candidates),
        }


def check_reference(reference: LatencyTable, space: SpaceSpec, resolutions: Sequence[int]) -> None:
    """REF must be a table of `space` holding every row at `resolutions`: one-line errors otherwise."""
    if reference.space_hash != space_hash(space):
        raise HwnasError(
            f"reference LUT {reference.source} is a table of space {reference.space_name!r} (hash "
            f"{reference.space_hash}), the results are of {space.name!r} (hash {space_hash(space)}); pass a table of "
            f"{space.name} to --from-table"
        )
    missing = sorted(set(row_classes(space, resolutions)) - set(reference.rows))
    if missing:
        res = missing[0].split("x", 1)[0]
        raise HwnasError(
            f"reference LUT {reference.source} lacks {len(missing)} rows the subnets need, e.g. {missing[0]!r}; "
            f"{reference.fix_hint(int(res) if res.isdigit() else None)}"
        )


def _row_design(
    reference: LatencyTable, space: SpaceSpec, resolutions: Sequence[int], terms: Sequence[str]
) -> tuple[list[str], np.ndarray, list[str]]:
    """Per table row, its entries in the model's columns: REF ms under "global" and under its class of every scale
    term, its depthwise MMACs under its kernel's "depthwise" column. A row's modelled ms is this row · coefficients,
    a subnet's the sum over its blocks."""
    classes = row_classes(space, resolutions)
    names: dict[str, int] = {"global": 0}
    entries: list[dict[str, float]] = []
    for key, (spec, cls) in classes.items():
        ms = reference.ms(key)
        entry = {"global": ms}
        for term in ("kind", *terms):
            if term == "depthwise":
                if cls.kind == "ir":
                    entry[f"depthwise:k{cls.kernel}"] = depthwise_mmacs(spec)
            elif (label := cls.label(term)) is not None:
                entry[f"{term}:{label}"] = ms
        entries.append(entry)
        for name in entry:
            names.setdefault(name, len(names))
    rows = np.zeros((len(entries), len(names)))
    for i, entry in enumerate(entries):
        for name, value in entry.items():
            rows[i, names[name]] = value
    return list(classes), rows, list(names)


def _subnet_design(space: SpaceSpec, archs: Sequence[Arch], keys: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """Per subnet the sum of its blocks' row entries (a block used twice counts twice)."""
    index = {key: i for i, key in enumerate(keys)}
    counts = np.zeros((len(archs), len(keys)))
    for n, arch in enumerate(archs):
        for spec in blocks_of(space, arch):
            counts[n, index[spec.key]] += 1.0
    return counts @ rows


def _system(x: np.ndarray, names: Sequence[str], y: np.ndarray, lambdas: Mapping[str, float]) -> np.ndarray:
    """The data rows (relative errors: every row divided by its measurement, + an intercept) stacked on the ridge
    rows; a column's penalty is scaled by its share of the mean prediction, so one λ means the same for every term."""
    n, k = x.shape
    data = np.hstack([x, np.ones((n, 1))]) / y[:, None]
    share = x.mean(axis=0) / max(float(x[:, 0].mean()), 1e-12)
    ridge = [
        np.eye(1, k + 1, j)[0] * np.sqrt(lambdas[name.split(":")[0]]) * share[j]
        for j, name in enumerate(names)
        if name != "global"
    ]
    return np.vstack([data, *ridge]) if ridge else data


def _solve(
    x: np.ndarray, names: Sequence[str], y: np.ndarray, lambdas: Mapping[str, float], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (columns + intercept) and each subnet's leave-one-out relative error (exact for the final system,
    via the hat matrix), with every table row held at or above its floor (`ROW_FLOOR` × REF ms × the overall ratio):
    rows the unconstrained fit pushes below it are pinned there by heavy rows, added until none is left below."""
    n = len(y)
    base = _system(x, names, y, lambdas)
    floor = ROW_FLOOR * rows[:, 0] * float(np.median(y / x[:, 0]))
    pinned = np.zeros(len(rows), dtype=bool)
    for _ in range(len(rows) + 1):
        pins = np.hstack([rows[pinned] / floor[pinned, None], np.zeros((int(pinned.sum()), 1))]) * PIN_WEIGHT
        a = np.vstack([base, pins])
        target = np.concatenate([np.ones(n), np.zeros(len(base) - n), np.full(len(pins), PIN_WEIGHT)])
        gram = np.linalg.pinv(a.T @ a)
        coef = gram @ a.T @ target
        below = (rows @ coef[:-1] < floor * (1 - 1e-6)) & ~pinned
        if not below.any():
            break
        pinned |= below
    data = a[:n]
    hat = np.einsum("ij,jk,ik->i", data, gram, data)
    loo = np.abs((1.0 - data @ coef) / np.clip(1.0 - hat, 1e-9, None))
    return coef, loo


def _tune(
    x: np.ndarray, names: Sequence[str], y: np.ndarray, terms: Sequence[str], rows: np.ndarray
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Per-term shrinkage by coordinate search over `LAMBDA_GRID` (two sweeps), minimising leave-one-out MAPE."""
    lambdas = {term: 1.0 for term in ("kind", *terms)}
    coef, loo = _solve(x, names, y, lambdas, rows)
    for _ in range(2):
        for term in list(lambdas):
            for lam in LAMBDA_GRID:
                trial = {**lambdas, term: lam}
                c, err = _solve(x, names, y, trial, rows)
                if float(err.mean()) < float(loo.mean()) - 1e-12:
                    lambdas, coef, loo = trial, c, err
    return lambdas, coef, loo


def fit_fewshot(reference: LatencyTable, space: SpaceSpec, measured: Mapping[Arch, float]) -> FewShotFit:
    """Fit every candidate to the whole-subnet timings {arch: ms} and keep the simplest within one standard error of
    the best leave-one-out error."""
    if len(measured) < MIN_SUBNETS:
        raise HwnasError(
            f"a few-shot table needs at least {MIN_SUBNETS} whole subnets, got {len(measured)}; bundle more with "
            "--whole-subnets"
        )
    archs = list(measured)
    y = np.array([measured[a] for a in archs], dtype=np.float64)
    resolutions = sorted({a.resolution for a in archs})
    check_reference(reference, space, resolutions)
    fits: list[FewShotFit] = []
    summary: list[dict[str, Any]] = []
    for name, terms in CANDIDATES:
        keys, rows, cols = _row_design(reference, space, resolutions, terms)
        lambdas, coef, loo = _tune(_subnet_design(space, archs, keys, rows), cols, y, terms, rows)
        fit = FewShotFit(
            model=name,
            terms=terms,
            lambdas=lambdas,
            coef={**dict(zip(cols, map(float, coef[:-1]))), "intercept": float(coef[-1])},
            cv_mape=float(loo.mean()),
            cv_se=float(loo.std(ddof=1) / np.sqrt(len(loo))) if len(loo) > 1 else 0.0,
            subnets=len(archs),
            candidates=(),
        )
        summary.append({"model": name, "cv_mape": round(fit.cv_mape, 6), "cv_se": round(fit.cv_se, 6)})
        fits.append(fit)
    best = min(fits, key=lambda f: f.cv_mape)
    chosen = next(f for f in fits if f.cv_mape <= best.cv_mape + best.cv_se)
    return dataclasses.replace(chosen, candidates=tuple(summary))


def scaled_rows(
    reference: LatencyTable, space: SpaceSpec, fit: FewShotFit, resolutions: Sequence[int]
) -> dict[str, TimingStats]:
    """REF's rows at `resolutions` under the fitted model (p90 scaled like p50; CV and run count kept)."""
    out = {}
    for key, (spec, cls) in row_classes(space, resolutions).items():
        ref = reference.rows[key]
        ms = fit.row_ms(ref.p50_ms, spec, cls)
        if not ms > 0:  # the fit holds rows at their floor; this is the net under it
            raise HwnasError(
                f"the few-shot fit ({fit.model}) gives row {key!r} a non-positive latency; is {reference.source} a "
                "table of a comparable device? bundle more --whole-subnets"
            )
        out[key] = TimingStats(ms, ref.p90_ms * ms / ref.p50_ms, ref.cv, ref.n)
    return out


def fewshot_table(
    reference: LatencyTable,
    space: SpaceSpec,
    measured: Mapping[Arch, tuple[float, float]],
    *,
    resolutions: Sequence[int],
    meta: Mapping[str, Any],
    source: str = "<memory>",
    reference_digest: str | None = None,
) -> LatencyTable:
    """The few-shot table: REF's rows rescaled by the fitted model, calibrated on the same whole subnets
    {arch: (p50 ms, cv)}, with `meta` plus a "fewshot" entry (reference, N, model, factors, leave-one-out error)."""
    from hwnas.latency.profiler import calibrate_table

    check_reference(reference, space, resolutions)
    unknown = sorted(str(a) for a in measured if a.resolution not in resolutions)
    if unknown:
        raise HwnasError(f"whole subnet {unknown[0]} is not at the table's resolutions {list(resolutions)}")
    fit = fit_fewshot(reference, space, {a: ms for a, (ms, _) in measured.items()})
    table = LatencyTable(scaled_rows(reference, space, fit, resolutions), meta, source=source)
    table = calibrate_table(table, space, measured)
    return table.with_meta(
        fewshot={
            "reference": {
                "lut": reference.source,
                "device": reference.device,
                "runtime": (reference.meta.get("profile") or {}).get("runtime"),
                "sha256": reference_digest,
                "date": reference.meta.get("date"),
            },
            **fit.to_meta(),
        }
    )
