"""Evolution speed: hwnas `evolve` vs PyPI `ofa`'s EvolutionFinder, side by side in one process, same space and budget.

Both get population 100 × 500 generations (parents 25%, mutation 50%, mutate prob 0.1 — OFA's defaults) on the OFA
MobileNetV3 space (k{3,5,7} e{3,4,6} d{2,3,4}, r{128,160,192,224}), the same latency values (OFA: a plain dict-sum LUT called
per candidate, as in its tutorial; hwnas: the same numbers as gene tables) and an accuracy predictor of the same size
(an MLP with the same hidden layers; OFA's own encoder + torch forward per generation, hwnas's one-hot + numpy forward).
Runs alternate (ofa, hwnas, ofa, hwnas, ...) and the median of each is reported, so drift on this shared machine hits both.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_search.py [--repeats 3] [--quick]

Writes bench/results/search_speed.json. Needs `pip install --no-deps ofa` (0.1.0.post*).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matmuls: BLAS threads only spin on a shared 2-core box
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hwnas.atomic import atomic_write_json  # noqa: E402
from hwnas.machine import machine_info, package_versions  # noqa: E402
from hwnas.search import (
    EvolutionConfig,
    PredictorConfig,
    evolve,
    fit_predictor,
    gene_latency_from_block_ms,  # noqa: E402
    gene_latency_from_lut,
    genome_of,
    one_hot,
)
from hwnas.search.latency_model import GeneLatency  # noqa: E402
from hwnas.space import BlockSpec, get_space  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3.csv"


def _formula_ms(b: BlockSpec) -> float:
    """Stand-in block latency (MAC-proportional + overhead) when no measured mbv3 LUT is committed yet."""
    mid = b.mid_ch
    macs = b.in_hw**2 * b.in_ch * mid + b.out_hw**2 * mid * (b.kernel**2 * 3 + b.out_ch)
    return 0.01 + macs * 2e-8


def latency_model(space) -> tuple[GeneLatency, str]:
    if LUT.is_file():
        from hwnas.latency.lut import load_lut

        return gene_latency_from_lut(load_lut(LUT, space=space), space), str(LUT.relative_to(REPO))
    return gene_latency_from_block_ms(space, _formula_ms), "formula stand-in (no committed mbv3 LUT)"


class DictLut:
    """OFA-side latency model: a plain dict keyed like OFA's tutorial tables, summed per candidate."""

    def __init__(self, lat: GeneLatency) -> None:
        g = lat.genome
        self.fixed = {res: float(lat.fixed_ms[r]) for r, res in enumerate(g.space.resolutions)}
        self.rows: dict[tuple[int, int, int, int, int], float] = {}
        for r, res in enumerate(g.space.resolutions):
            for slot, (s, j) in enumerate(zip(g.slot_stage, g.slot_pos)):
                for c, choice in enumerate(g.choices[s]):
                    self.rows[(res, int(s), int(j), choice.kernel, choice.expand)] = float(lat.slot_ms[r, slot, c])

    def predict_efficiency(self, sample: dict) -> float:
        res = sample["r"][0]
        total = self.fixed[res]
        for s, d in enumerate(sample["d"]):
            for j in range(d):
                i = s * 4 + j
                total += self.rows[(res, s, j, sample["ks"][i], sample["e"][i])]
        return total


def _import_ofa_tutorial() -> None:
    """`ofa.tutorial/__init__` imports its ImageNet helpers, which import `gdown` (a downloader we neither have nor need:
    nothing here downloads). A placeholder module lets the package import; the two modules used never touch it."""
    import sys
    import types

    sys.modules.setdefault("gdown", types.ModuleType("gdown"))


def ofa_predictor(hidden: int, layers: int):
    """OFA's AccuracyPredictor class (its 128-d one-hot encoder) with an MLP of the given size, on CPU."""
    _import_ofa_tutorial()
    from ofa.tutorial.accuracy_predictor import AccuracyPredictor

    pred = AccuracyPredictor(pretrained=False, device="cpu")
    dims = [128] + [hidden] * layers + [1]
    mods: list[torch.nn.Module] = []
    for i in range(len(dims) - 1):
        mods += [torch.nn.Linear(dims[i], dims[i + 1]), torch.nn.ReLU()]
    pred.model = torch.nn.Sequential(*mods[:-1]).eval()
    return pred


def run_ofa(
    lat: GeneLatency, budget_ms: float, predictor, *, generations: int, seed: int
) -> tuple[float, float, float]:
    from ofa.tutorial.evolution_finder import EvolutionFinder

    random.seed(seed)  # OFA reads only the global RNGs
    np.random.seed(seed)
    dict_lut = DictLut(lat)
    finder = EvolutionFinder(
        "note10",
        30,
        dict_lut,
        predictor,
        population_size=100,
        max_time_budget=generations,
        parent_ratio=0.25,
        mutation_ratio=0.5,
        mutate_prob=0.1,
    )
    finder.set_efficiency_constraint(budget_ms)
    finder.arch_manager.resolutions = list(lat.genome.space.resolutions)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        _, best = finder.run_evolution_search()
    seconds = time.perf_counter() - start
    return seconds, float(best[0]), float(best[2])


def run_hwnas(lat: GeneLatency, budget_ms: float, predictor, *, generations: int, seed: int):
    cfg = EvolutionConfig(
        population=100, generations=generations, parent_ratio=0.25, mutation_ratio=0.5, mutate_prob=0.1
    )
    res = evolve(lat.genome.space, predictor, lat, budget_ms=budget_ms, cfg=cfg, rng=np.random.default_rng(seed))
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 generations, 1 repeat")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "search_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generations, repeats = (50, 1) if args.quick else (500, args.repeats)
    space = get_space("mbv3")
    lat, lut_source = latency_model(space)
    genome = genome_of(space)
    rng = np.random.default_rng(0)
    probe = genome.sample(2000, rng)
    budget_ms = float(np.quantile(lat(probe), 0.3))  # binding: 70% of uniform samples are over budget
    # an accuracy target to fit both predictors' sizes on (speed does not depend on the weights' values)
    truth_w = rng.normal(size=int(genome.cards.sum())) * 0.01
    fit_genes = genome.sample(400, rng)
    fit_y = 0.75 + one_hot(genome, fit_genes) @ truth_w
    configs = []
    for hidden, layers in ((64, 2), (400, 3)):
        ours = fit_predictor(
            genome,
            fit_genes,
            fit_y,
            cfg=PredictorConfig(kind="mlp", hidden=hidden, layers=layers, epochs=50),
            rng=np.random.default_rng(1),
        )
        theirs = ofa_predictor(hidden, layers)
        t_ofa, t_hw, runs = [], [], []
        for rep in range(repeats):
            sec, ofa_acc, ofa_ms = run_ofa(lat, budget_ms, theirs, generations=generations, seed=rep)
            t_ofa.append(sec)
            res = run_hwnas(lat, budget_ms, ours, generations=generations, seed=rep)
            t_hw.append(res.seconds)
            runs.append(
                {
                    "ofa_s": round(sec, 4),
                    "ofa_best_ms": round(ofa_ms, 4),
                    "hwnas_s": round(res.seconds, 4),
                    "hwnas_best_ms": round(res.predicted_ms, 4),
                    "hwnas_distinct_predicted": res.evaluated,
                    "hwnas_predictor_calls": res.notes["score_calls"],
                }
            )
            assert res.predicted_ms <= budget_ms and ofa_ms <= budget_ms
        med_ofa, med_hw = statistics.median(t_ofa), statistics.median(t_hw)
        configs.append(
            {
                "predictor": f"MLP {'x'.join([str(hidden)] * layers)} (hwnas {ours.n_params} params on its {one_hot(genome, probe[:1]).shape[1]}-d "
                f"one-hot; OFA {sum(p.numel() for p in theirs.model.parameters())} params on its 128-d one-hot)",
                "ofa_seconds_median": round(med_ofa, 4),
                "hwnas_seconds_median": round(med_hw, 4),
                "speedup": round(med_ofa / med_hw, 2),
                "runs": runs,
            }
        )
        print(f"predictor {hidden}x{layers}: ofa {med_ofa:.3f} s, hwnas {med_hw:.3f} s -> {med_ofa / med_hw:.1f}x")
    t0 = time.perf_counter()
    try:
        evolve(space, ours, lat, budget_ms=lat.min_ms()[0] * 0.9, cfg=EvolutionConfig(), rng=np.random.default_rng(0))
    except Exception as exc:  # HwnasError expected
        infeasible = {"seconds_to_error": round(time.perf_counter() - t0, 4), "message": str(exc)}
    payload = {
        "benchmark": "search_speed",
        "setup": {
            "space": "mbv3",
            "population": 100,
            "generations": generations,
            "repeats": repeats,
            "budget_ms": round(budget_ms, 4),
            "budget_rule": "30th percentile of 2000 uniform samples' latency",
            "latency_model": lut_source,
            "ofa_version": package_versions(("ofa",))["ofa"],
            "threads": {"torch": 1, "openblas": os.environ.get("OPENBLAS_NUM_THREADS")},
        },
        "results": configs,
        "infeasible_budget": infeasible,
        "machine": machine_info(),
    }
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
