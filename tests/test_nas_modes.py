"""Architecture-search modes: expected latency, gradients to α, ENAS controller, temperature, resume."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from search_lut import synthetic_table

from hwnas.data import load_dataset, make_batch
from hwnas.latency import LatencyPredictor
from hwnas.space import Arch, LayerChoice, get_space, layer_choices
from hwnas.supernet import Supernet
from hwnas.train import enas
from hwnas.train.arch_params import ArchParams, decode_indices, indices_of, log_prob
from hwnas.train.expected_latency import decode_near_target, expected_latency_ms, indices_latency_ms, latency_arrays
from hwnas.train.nas_config import NasConfig, temperature
from hwnas.train.nas_loop import load_nas_checkpoint, mode_module, train_nas
from hwnas.train.nas_state import NasState


def _tiny_space():
    """2 stages, depths 1–3, kernels {3,5}, expands {3,6}: 84² archs per resolution — enumerable."""
    base = get_space("mbv3-tiny", width=0.25)
    stages = tuple(dataclasses.replace(s, depths=(1, 2, 3), kernels=(3, 5), expands=(3, 6)) for s in base.stages[1:3])
    return dataclasses.replace(base, stages=stages, resolutions=(28,))


def _arch_prob(params: ArchParams, probs: torch.Tensor, arch: Arch) -> float:
    p = 1.0
    for s, layers in enumerate(arch.stages):
        for pos, layer in enumerate(layers):
            p *= float(probs[s, pos, params.choices[s].index(layer)])
        if len(layers) < params.max_depth:
            p *= float(probs[s, len(layers), params.skip])
    return p


def test_expected_latency_equals_enumeration() -> None:
    space = _tiny_space()
    table = synthetic_table(space)
    params = ArchParams(space, resolution=28)
    with torch.no_grad():
        params.logits.copy_(torch.randn(params.shape, generator=torch.Generator().manual_seed(3)) * 1.5)
    probs = params.probs(torch.float64).detach()
    stage_options = [
        [tuple(ls) for d in st.depths for ls in itertools.product(layer_choices(st), repeat=d)] for st in space.stages
    ]
    archs = [Arch(28, combo) for combo in itertools.product(*stage_options)]
    weights = np.array([_arch_prob(params, probs, a) for a in archs])
    lat = LatencyPredictor(table, space).predict_many(archs)
    assert len(archs) == 84 * 84
    assert weights.sum() == pytest.approx(1.0, abs=1e-9)
    expected = float(expected_latency_ms(probs, latency_arrays(table, space, params)))
    assert expected == pytest.approx(float((weights * lat).sum()), rel=1e-9)
    # sampled archs: one gather equals the predictor, and indices round-trip through decode
    arrays = latency_arrays(table, space, params)
    idx = params.sample(torch.Generator().manual_seed(0), n=50)
    sampled = [decode_indices(params, i) for i in idx]
    assert np.allclose(indices_latency_ms(idx, arrays).numpy(), LatencyPredictor(table, space).predict_many(sampled))
    assert all(decode_indices(params, indices_of(params, a)) == a for a in sampled)


def test_argmax_arch_takes_each_layers_most_probable_entry() -> None:
    space = _tiny_space()
    params = ArchParams(space, resolution=28)
    with torch.no_grad():
        params.logits.copy_(torch.randn(params.shape, generator=torch.Generator().manual_seed(5)))
    probs = params.probs().detach()
    arch = params.arch()
    for s, layers in enumerate(arch.stages):
        for p, layer in enumerate(layers):
            assert int(probs[s, p].argmax()) == params.choices[s].index(layer)
        if len(layers) < params.max_depth:
            assert int(probs[s, len(layers)].argmax()) == params.skip


def test_decode_near_target_is_the_most_probable_arch_at_the_target() -> None:
    space = _tiny_space()
    table = synthetic_table(space)
    params = ArchParams(space, resolution=28)
    with torch.no_grad():
        params.logits.copy_(torch.randn(params.shape, generator=torch.Generator().manual_seed(7)))
    arrays = latency_arrays(table, space, params)
    target = float(expected_latency_ms(params.probs(torch.float64).detach(), arrays))
    best = decode_near_target(params, arrays, target, generator=torch.Generator().manual_seed(0), samples=512)
    assert abs(float(indices_latency_ms(best, arrays)) / target - 1) <= 0.05
    draws = params.sample(torch.Generator().manual_seed(0), n=512)  # the same draws the decoder saw
    near = (indices_latency_ms(draws, arrays) / target - 1).abs() <= 0.05
    assert float(log_prob(params, best[None])[0].detach()) >= float(log_prob(params, draws[near]).max().detach()) - 1e-6


@pytest.fixture(scope="module")
def small() -> tuple:
    space = get_space("mbv3-tiny", width=0.25)
    table = synthetic_table(space, resolutions=(28,))
    data = load_dataset("synthetic", val_size=128, synthetic_size=512)
    return space, table, data


def _state(space, table, cfg: NasConfig) -> NasState:
    params = ArchParams(space, resolution=28)
    torch.manual_seed(0)
    net = Supernet(space).train()
    opt = torch.optim.Adam([params.logits], lr=cfg.alpha_lr)
    return NasState(
        net, params, latency_arrays(table, space, params), cfg, torch.Generator().manual_seed(0), opt, tau=1.0
    )


@pytest.mark.parametrize("mode", ["fbnet", "proxyless", "darts"])
def test_gradients_reach_alpha_through_the_network(small, mode: str) -> None:
    """With the latency term off, every layer the forward used gets a non-zero, finite CE gradient on its α row."""
    space, table, data = small
    state = _state(space, table, NasConfig(mode=mode, target_ms=1.0, latency_loss="none"))  # type: ignore[arg-type]
    x, y = make_batch(data.val, torch.arange(16), resolution=28)
    logits = mode_module(mode).arch_forward(state, x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    (grad,) = torch.autograd.grad(loss, [state.params.logits])
    assert torch.isfinite(grad).all()
    rows = grad.abs().sum(-1)  # [stages, positions]
    assert (rows[:, :2] > 0).all(), rows  # the two mandatory layers of every stage ran and got gradient
    assert not grad[~state.params.valid].any()  # masked entries stay untouched
    before = state.params.logits.detach().clone()
    mode_module(mode).arch_step(state, x, y)
    assert not torch.equal(before, state.params.logits.detach())


def test_latency_term_alone_lowers_expected_latency(small) -> None:
    space, table, _ = small
    state = _state(space, table, NasConfig(mode="fbnet", target_ms=0.1, alpha_lr=0.05))
    arrays = state.arrays
    start = float(expected_latency_ms(state.params.probs(torch.float64), arrays).detach())
    for _ in range(20):
        lat = expected_latency_ms(state.params.probs(torch.float64), arrays)
        state.alpha_opt.zero_grad()
        lat.backward()
        state.alpha_opt.step()
    assert float(expected_latency_ms(state.params.probs(torch.float64), arrays).detach()) < 0.8 * start


def test_enas_controller_moves_sampled_latency_toward_target(small) -> None:
    space, table, data = small
    pred = LatencyPredictor(table, space)
    low = pred.predict(Arch(28, tuple((LayerChoice(3, 3),) * 2 for _ in space.stages)))
    cfg = NasConfig(
        mode="enas", target_ms=low * 1.05, latency_weight=8.0, alpha_lr=0.3, controller_samples=4, entropy_weight=0.0
    )
    state = _state(space, table, cfg)
    x, y = make_batch(data.val, torch.arange(24), resolution=28)
    probe = torch.Generator().manual_seed(123)

    def mean_sampled() -> float:
        idx = state.params.sample(probe, n=256)
        return float(indices_latency_ms(idx, state.arrays).mean())

    before = mean_sampled()
    for _ in range(20):
        enas.arch_step(state, x, y)
    after = mean_sampled()
    assert cfg.target_ms < after < before - 0.2 * (before - cfg.target_ms)


def test_temperature_follows_schedule(small, tmp_path: Path) -> None:
    cfg = NasConfig(
        mode="fbnet",
        target_ms=0.2,
        epochs=3,
        warmup_epochs=1,
        steps_per_epoch=2,
        batch_size=16,
        tau0=5.0,
        tau_decay=0.3,
    )
    for epoch in (0.0, 1.0, 2.5, 10.0):
        assert temperature(cfg, epoch) == pytest.approx(5.0 * math.exp(-0.3 * epoch))
    space, table, data = small
    train_nas(space, data, table, cfg, out_dir=tmp_path, progress=False)
    history = load_nas_checkpoint(tmp_path / "checkpoint.pt")["nas"]["history"]
    import json

    taus = [h["tau"] for h in json.loads(history)]
    # epochs after warm-up: τ at the last α step of the epoch = tau0·exp(−decay·(epoch − warmup + (steps−1)/steps))
    assert taus[1] == pytest.approx(temperature(cfg, 0.5))
    assert taus[2] == pytest.approx(temperature(cfg, 1.5))


def test_resume_restores_alpha_exactly(small, tmp_path: Path) -> None:
    space, table, data = small
    cfg = NasConfig(
        mode="proxyless",
        target_ms=0.2,
        epochs=2,
        warmup_epochs=0,
        steps_per_epoch=3,
        batch_size=16,
        alpha_lr=0.05,
        adapt_rate=0.1,
    )
    straight = train_nas(space, data, table, cfg, out_dir=tmp_path / "a", progress=False)
    alpha_a = load_nas_checkpoint(tmp_path / "a" / "checkpoint.pt")["nas"]["alpha"]

    class Stop(Exception):
        pass

    def stop(epoch: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        train_nas(space, data, table, cfg, out_dir=tmp_path / "b", progress=False, on_epoch=stop)
    after_one = load_nas_checkpoint(tmp_path / "b" / "checkpoint.pt")["nas"]["alpha"]
    assert not torch.equal(after_one, torch.zeros_like(after_one))
    resumed = train_nas(space, data, table, cfg, out_dir=tmp_path / "b", resume=True, progress=False)
    alpha_b = load_nas_checkpoint(tmp_path / "b" / "checkpoint.pt")["nas"]["alpha"]
    assert torch.equal(alpha_a, alpha_b)
    assert resumed.arch == straight.arch
    arch_json = (tmp_path / "b" / "arch.json").read_text()
    assert straight.arch in arch_json and '"alpha"' in arch_json
