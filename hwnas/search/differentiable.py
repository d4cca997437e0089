"""Differentiable search result (FBNet / ProxylessNAS / DARTS runs): take the argmax arch, repair it to the budget.

The architecture parameters were trained together with the weights (`hwnas train --mode fbnet|proxyless|darts`), which
write ``RUN/arch.json`` = ``{"arch": "<canonical arch string>", ...}``. The latency term of that training only pulls the
*expected* latency towards a target, so the argmax can miss the budget either way; over budget, its slowest layers are
shrunk until it fits (the same repair evolution uses). One evaluation scores the result.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.genome import genome_of
from hwnas.search.latency_model import GeneLatency, check_budget
from hwnas.search.result import Evaluations, ScoreFn, SearchResult
from hwnas.space import Arch, SpaceSpec, check_arch

__all__ = ["read_run_arch", "differentiable_search"]


def read_run_arch(run_dir: Path, space: SpaceSpec) -> Arch:
    """The arch a differentiable run converged to, from ``RUN/arch.json``."""
    path = Path(run_dir) / "arch.json"
    if not path.is_file():
        raise HwnasError(
            f"{path} not found; the differentiable strategy needs a run trained with "
            f"'hwnas train --mode fbnet|proxyless|darts' (or use --strategy evolution)"
        )
    try:
        payload = json.loads(path.read_text())
        text = payload["arch"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise HwnasError(f'{path} is not a valid arch.json (expected {{"arch": "r32/..."}}); re-run training') from None
    return check_arch(space, Arch.parse(text))


def differentiable_search(
    space: SpaceSpec, score_fn: ScoreFn, latency_fn: GeneLatency, *, arch: Arch, budget_ms: float
) -> SearchResult:
    """`arch` if it fits `budget_ms`, else its repair; scored once."""
    start = time.perf_counter()
    genome = genome_of(space)
    check_budget(latency_fn, budget_ms)
    genes = genome.encode([arch])
    original_ms = float(latency_fn(genes)[0])
    repaired = latency_fn.repair(genes, budget_ms=budget_ms)
    evals = Evaluations(genome, score_fn, max_evaluations=None)
    score = float(evals.score(repaired)[0])
    lat = float(latency_fn(repaired)[0])
    return SearchResult(
        strategy="differentiable",
        budget_ms=budget_ms,
        arch=genome.decode(repaired)[0],
        predicted_ms=lat,
        accuracy=score,
        evaluated=evals.count,
        seconds=time.perf_counter() - start,
        genome=genome,
        genes=repaired,
        latency_ms=np.array([lat]),
        scores=np.array([score]),
        notes={"trained_arch": str(arch), "trained_arch_ms": original_ms, "repaired": int(original_ms > budget_ms)},
    )
