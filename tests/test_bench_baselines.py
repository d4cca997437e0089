"""The result-quality benchmark's own logic: baseline adaptation, the budget rule and the win rule (fast, no training)."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from hwnas.data import load_dataset
from hwnas.errors import HwnasError
from hwnas.train.checkpoint import CHECKPOINT
from hwnas.train.config import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from baseline_nets import BASELINES, BaselineSpec, TrainPlan, build_baseline, train_baseline  # noqa: E402
from baselines_latency import choose_budgets  # noqa: E402
from baselines_pareto import judge_budget  # noqa: E402
from bench_baselines import fingerprint, parse_args  # noqa: E402


def test_six_baselines() -> None:
    assert [b.name for b in BASELINES] == [
        f"mobilenet_v3_{f}_x{w}" for f in ("small", "large") for w in ("0.5", "0.75", "1")
    ]


@pytest.mark.parametrize("spec", [BaselineSpec("small", 0.5), BaselineSpec("large", 0.75)])
def test_baseline_is_adapted_like_the_tiny_space(spec: BaselineSpec) -> None:
    state = torch.get_rng_state()
    model = build_baseline(spec, in_channels=1, num_classes=10, seed=3).eval()
    assert torch.equal(state, torch.get_rng_state()), "building a baseline must not move the global RNG"
    stem = model.features[0][0]
    assert stem.in_channels == 1 and stem.stride == (1, 1)
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    same = build_baseline(spec, in_channels=1, num_classes=10, seed=3)
    other = build_baseline(spec, in_channels=1, num_classes=10, seed=4)
    assert torch.equal(stem.weight, same.features[0][0].weight)
    assert not torch.equal(stem.weight, other.features[0][0].weight)


def test_training_is_a_function_of_the_seed_and_leaves_the_global_rng_alone() -> None:
    data = load_dataset("synthetic", val_size=64, seed=0, image_size=28, synthetic_size=256)
    plan = TrainPlan(
        recipe=TrainConfig(dataset="synthetic", batch_size=16), steps=3, resolution=32, seed=5, batch_size=16
    )

    def trained() -> torch.Tensor:
        model = build_baseline(
            BaselineSpec("small", 0.5), in_channels=data.channels, num_classes=data.num_classes, seed=1
        )
        train_baseline(model, data, plan, desc="test", progress=False)
        assert not model.training
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    state = torch.get_rng_state()
    first, second = trained(), trained()
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(first, second)
    untrained = build_baseline(
        BaselineSpec("small", 0.5), in_channels=data.channels, num_classes=data.num_classes, seed=1
    )
    assert not torch.equal(first, torch.cat([p.detach().flatten() for p in untrained.parameters()]))


def _point(name: str, ms: float, acc: float, std: float = 0.0) -> dict[str, object]:
    return {"name": name, "measured_ms": ms, "test_acc_mean": acc, "test_acc_std": std}


def test_win_needs_to_beat_every_baseline_at_or_below_its_latency() -> None:
    baselines = [_point("fast", 0.5, 0.80), _point("equal", 1.0, 0.90), _point("slow", 2.0, 0.99)]
    win = judge_budget(_point("hwnas", 1.0, 0.91), baselines)
    assert win["beats_all"] is True and win["best_eligible"] == "equal" and win["margin_pp"] == pytest.approx(1.0)
    assert [e["name"] for e in win["eligible"]] == ["equal", "fast"]  # "slow" is slower: not in the comparison
    assert judge_budget(_point("hwnas", 1.0, 0.90), baselines)["beats_all"] is False  # a tie loses
    assert judge_budget(_point("hwnas", 0.4, 0.99), baselines)["beats_all"] is None  # nothing as fast
    # at the budget: a winner far below a budget matched to "slow" must beat "slow" too
    at_budget = judge_budget(_point("hwnas", 1.0, 0.95), baselines, up_to_ms=2.0)
    assert at_budget["beats_all"] is False and at_budget["best_eligible"] == "slow"
    assert judge_budget(_point("hwnas", 0.4, 0.85), baselines, up_to_ms=0.5)["beats_all"] is True
    assert judge_budget(_point("hwnas", 1.0, 0.91), baselines, up_to_ms=0.5)["beats_all"] is True  # never below its own


def test_budgets_matched_to_baselines_then_filled_up_with_fractions() -> None:
    probe = {
        "ratio_measured_to_lut": 0.5,  # -> 0.2, 2.0, 2.04, 18 LUT ms; range [1, 3]: b and c share one budget
        "baselines_untrained_ms": {"a": 0.1, "b": 1.0, "c": 1.02, "d": 9.0},
    }
    args = argparse.Namespace(budgets=None, fractions="0.5,0.0,1.0", min_budgets=3)
    budgets = choose_budgets(1.0, 3.0, args, probe)
    assert [b["budget_ms"] for b in budgets] == [1.0, 2.0, 3.0]  # fraction 0.5 (= 2.0) is skipped: b/c are there
    assert budgets[1]["reason"].startswith("matched to b") and " and c " in budgets[1]["reason"]
    assert "fill-up" in budgets[0]["reason"]
    assert [b["matched"] for b in budgets] == [[], ["b", "c"], []]
    many = {"ratio_measured_to_lut": 1.0, "baselines_untrained_ms": {"a": 1.2, "b": 1.8, "c": 2.4, "d": 2.9}}
    assert [b["budget_ms"] for b in choose_budgets(1.0, 3.0, args, many)] == [1.2, 1.8, 2.4, 2.9]  # no fill-up needed
    explicit = choose_budgets(1.0, 3.0, parse_args(["--budgets", "1.5,2.5"]), probe)
    assert [b["budget_ms"] for b in explicit] == [1.5, 2.5]
    with pytest.raises(HwnasError, match="--budgets"):  # under the table's smallest subnet: no subnet fits
        choose_budgets(1.0, 3.0, parse_args(["--budgets", "0.5,2.5"]), probe)
    with pytest.raises(SystemExit):  # not a number: refused while parsing, before any work
        parse_args(["--budgets", "1.5,fast"])


def _fake_run(folder: Path, **recipe: object) -> types.SimpleNamespace:
    """A run folder as `fingerprint` reads it: the checkpoint file's identity and config.json."""
    folder.mkdir()
    (folder / CHECKPOINT).write_bytes(b"checkpoint " + folder.name.encode())
    (folder / "config.json").write_text(json.dumps({"mode": "bignas", "lr": 0.1, "num_random": 1, **recipe}))
    return types.SimpleNamespace(run_dir=folder)


def test_search_settings_do_not_make_trained_baselines_stale(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    lut = tmp_path / "table.csv"
    lut.write_text("rows")

    def keys(*extra: str, of: types.SimpleNamespace = run, epochs: float = 3.3) -> tuple[str, str]:
        args = parse_args(["--run", str(of.run_dir), "--lut", str(lut), *extra])
        return fingerprint(args, of, epochs), fingerprint(args, of, epochs, baselines_only=True)

    everything, baselines = keys()
    more_search, same_baselines = keys("--evaluations", "128", "--kd-weight", "0", "--timing-passes", "7")
    assert more_search != everything and same_baselines == baselines
    other_res, other_baselines = keys("--resolution", "24")
    assert other_res != everything and other_baselines != baselines
    assert keys("--timing-passes", "7") == (everything, baselines)  # the timing is never cached
    # a retrained supernet: new exports, but the baselines only follow its recipe and the epochs it trained
    retrained = keys(of=_fake_run(tmp_path / "retrained", num_random=2))
    assert retrained[0] != everything and retrained[1] == baselines
    assert keys(of=_fake_run(tmp_path / "other-recipe", lr=0.05))[1] != baselines
    assert keys(epochs=4.3)[1] != baselines
