"""The timing protocol, driven by a fake clock and fake runners (the only fakes allowed: clock and device runner)."""

import random
from pathlib import Path

import pytest

from hwnas.errors import HwnasError
from hwnas.latency import PassRecord, Protocol, load_profile, run_protocol
from hwnas.latency.harness import pass_speeds, split_half_p50, stats_from_passes
from hwnas.latency.profiles import list_profiles, profile_from_dict
from hwnas.latency.runtime import Loaded


class FakeClock:
    """Nanosecond clock that only moves when a fake model runs."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class FakeDevice:
    """Models with scripted latencies; `slow_calls` makes chosen calls slow (a noisy neighbour)."""

    def __init__(self, clock: FakeClock, latencies_ms: dict, slow=lambda key, n: False) -> None:
        self.clock, self.latencies_ms, self.slow = clock, latencies_ms, slow
        self.calls: list[str] = []

    def run_fn(self, key):
        def run():
            n = sum(1 for c in self.calls if c == key)
            self.calls.append(key)
            ms = self.latencies_ms[key] * (3.0 if self.slow(key, n) else 1.0)
            self.clock.now += int(ms * 1e6)

        return run


def test_protocol_warms_up_interleaves_and_takes_medians():
    clock = FakeClock()
    device = FakeDevice(clock, {"a": 1.0, "b": 2.0, "c": 0.5})
    protocol = Protocol(warmup_s=0.01, warmup=1, rounds=4, repeats=5, max_cv=0.5, remeasure=0)
    stats = run_protocol({k: device.run_fn(k) for k in "abc"}, protocol, rng=random.Random(1), timer=clock)
    assert {k: s.p50_ms for k, s in stats.items()} == pytest.approx({"a": 1.0, "b": 2.0, "c": 0.5})
    assert all(s.n == 20 and s.cv == 0.0 for s in stats.values())
    # warm-up: every item ran before the first timed run, until 10 ms of (fake) time had passed
    warm = 0
    while len(set(device.calls[: warm + 1])) < 3 or sum(device.latencies_ms[c] for c in device.calls[:warm]) < 10:
        warm += 1
    timed = device.calls[warm:]
    per_item_pass = protocol.warmup + protocol.repeats
    passes = [tuple(timed[i * per_item_pass] for i in range(p * 3, p * 3 + 3)) for p in range(4)]
    assert all(sorted(p) == ["a", "b", "c"] for p in passes)  # each pass visits every item once ...
    assert len(set(passes)) > 1  # ... in a fresh random order


def test_one_slow_pass_does_not_move_the_median_and_high_cv_is_remeasured():
    clock = FakeClock()
    # item "a" is 3x slower during its whole second pass (drift while it ran); "b" is clean
    per_pass = 2 + 4  # warmup + repeats
    device = FakeDevice(
        clock, {"a": 1.0, "b": 1.0}, slow=lambda key, n: key == "a" and per_pass <= n - 2 < 2 * per_pass
    )
    protocol = Protocol(warmup_s=0.0, warmup=2, rounds=3, repeats=4, max_cv=0.05, remeasure=2)
    stats = run_protocol({k: device.run_fn(k) for k in "ab"}, protocol, rng=random.Random(0), timer=clock)
    assert stats["a"].p50_ms == pytest.approx(1.0)  # median of passes ignores the slow one
    assert stats["a"].p90_ms == pytest.approx(1.0)
    assert stats["a"].cv > 0.05
    assert stats["a"].n == (3 + 2) * 4  # high CV: two extra passes (the limit)
    assert stats["b"].n == 3 * 4 and stats["b"].cv == 0.0


def test_a_slow_phase_of_the_whole_machine_is_divided_out_per_pass():
    # 10 equally fast items, 3 passes; the machine runs 2x slower through all of pass 1 and the first 6 items of pass 2
    # (a slow phase ending mid-pass). Per-item medians alone would split the items into 2.0 ms and 1.0 ms ones.
    clock, calls = FakeClock(), []
    n_items, repeats = 10, 2

    def run_fn(key):
        def run():
            index = len(calls)
            calls.append(key)
            timed = index - n_items  # the global warm-up is one sweep over every item
            slow = n_items * repeats <= timed < n_items * repeats * 2 + 6 * repeats
            clock.now += int((2.0 if slow else 1.0) * 1e6)

        return run

    protocol = Protocol(warmup_s=0.0, warmup=0, rounds=3, repeats=repeats, max_cv=1.0, remeasure=0)
    raw_passes = {}
    stats = run_protocol(
        {k: run_fn(k) for k in range(n_items)},
        protocol,
        rng=random.Random(0),
        timer=clock,
        checkpoint=raw_passes.update,
    )  # the last checkpoint holds every pass as timed
    p50 = [s.p50_ms for s in stats.values()]
    assert max(p50) == pytest.approx(min(p50))  # one common scale: the ranking (all equal) survives
    raw = [stats_from_passes(recs).p50_ms for recs in raw_passes.values()]
    assert max(raw) == pytest.approx(2 * min(raw))  # without the pass speeds it would not


def test_pass_speeds_need_enough_items():
    few = {k: [PassRecord(1.0, 1.0, 1), PassRecord(2.0, 2.0, 1)] for k in range(3)}
    assert pass_speeds(few) == (1.0, 1.0)
    many = {k: [PassRecord(1.0, 1.0, 1), PassRecord(2.0, 2.0, 1), PassRecord(1.0, 1.0, 1)] for k in range(8)}
    assert pass_speeds(many) == pytest.approx((1.0, 2.0, 1.0))
    assert stats_from_passes(many[0], pass_speeds(many)).cv == 0.0


def test_split_half_takes_even_and_odd_passes_each_divided_by_its_pass_speed():
    passes = [PassRecord(1.0, 1.0, 1), PassRecord(4.0, 4.0, 1), PassRecord(3.0, 3.0, 1), PassRecord(2.0, 2.0, 1)]
    assert split_half_p50(passes) == (2.0, 3.0)  # medians of (1, 3) and of (4, 2)
    assert split_half_p50(passes, (1.0, 2.0, 1.0, 1.0)) == (2.0, 2.0)  # pass 1 ran 2x slow: 4 -> 2
    with pytest.raises(ValueError):
        split_half_p50(passes[:1])


def test_resume_keeps_done_passes_and_checkpoints():
    clock = FakeClock()
    device = FakeDevice(clock, {"a": 1.0, "b": 2.0})
    protocol = Protocol(warmup_s=0.0, warmup=0, rounds=3, repeats=2, max_cv=1.0, remeasure=0, checkpoint_s=0.0)
    done = {"a": [PassRecord(1.0, 1.0, 2)] * 3, "b": [PassRecord(2.0, 2.0, 2)]}
    saved = []
    stats = run_protocol(
        {k: device.run_fn(k) for k in "ab"},
        protocol,
        rng=random.Random(0),
        timer=clock,
        done=done,
        checkpoint=lambda passes: saved.append({k: len(v) for k, v in passes.items()}),
    )
    timed_a = [c for c in device.calls if c == "a"]
    assert len(timed_a) == 1  # only the one-run global warm-up: its passes were all done
    assert stats["b"].n == 6 and stats["a"].n == 6
    assert saved[-1] == {"a": 3, "b": 3}


def test_stats_from_passes():
    stats = stats_from_passes([PassRecord(1.0, 1.2, 10), PassRecord(1.1, 1.3, 10), PassRecord(5.0, 6.0, 10)])
    assert stats.p50_ms == pytest.approx(1.1) and stats.p90_ms == pytest.approx(1.3) and stats.n == 30
    assert stats.cv > 0.5


def test_shipped_profiles_load_and_validate():
    names = list_profiles()
    for expected in ("cpu-ort-1t", "cpu-ort-2t", "cpu-torch-1t", "cuda-ort", "cuda-torch", "remote-template"):
        assert expected in names
        profile = load_profile(expected)
        assert profile.name == expected
    assert load_profile("cpu-ort-1t").threads == 1 and load_profile("cpu-ort-1t").clock == "thread"
    assert load_profile("remote-template").remote
    root = Path(__file__).parents[1] / "profiles"
    assert load_profile(root / "cpu-ort-2t.yaml") == load_profile("cpu-ort-2t")


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"name": "x", "threads": 0}, "threads"),
        ({"name": "x", "runtime": "tflite"}, "runtime"),
        ({"name": "x", "thread": 1}, "unknown field"),
        ({"name": "x", "clock": "thread", "threads": 2}, "clock"),
        ({"name": "x", "max_cv": float("nan")}, "max_cv"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_bad_profiles_are_rejected(bad, match):
    with pytest.raises(HwnasError, match=match):
        profile_from_dict(bad, where="test")


def test_unknown_profile_and_bad_yaml(tmp_path):
    with pytest.raises(HwnasError, match="unknown device profile 'pixel9'.*cpu-ort-1t"):
        load_profile("pixel9")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [oops\n")
    with pytest.raises(HwnasError, match="not valid YAML"):
        load_profile(bad)


def test_cuda_profiles_need_a_gpu():
    import onnxruntime
    import torch

    from hwnas.latency.runtime import make_runner

    if torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a GPU is present")
    for name in ("cuda-ort", "cuda-torch"):
        with pytest.raises(HwnasError, match="cpu-"):
            make_runner(load_profile(name))


@pytest.mark.gpu
def test_cuda_profiles_run_on_a_gpu():
    """The real path of `test_cuda_profiles_need_a_gpu` where CUDA exists: cuda-torch loads a block onto the GPU and runs
    it there; cuda-ort does the same when onnxruntime has its CUDA provider, and otherwise says how to get it."""
    import onnxruntime
    import torch

    from hwnas.blocks import build_block
    from hwnas.latency.runtime import make_runner
    from hwnas.space import BlockSpec

    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    spec = BlockSpec.parse_key("8x8x16:ir_k3_e3_c16_s1_se_hs")
    loaded = make_runner(load_profile("cuda-torch")).load(build_block(spec), (1, 16, 8, 8))
    out = loaded.run()
    assert isinstance(out, torch.Tensor) and out.device.type == "cuda" and tuple(out.shape) == (1, 16, 8, 8)
    loaded.release()
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        loaded = make_runner(load_profile("cuda-ort")).load(build_block(spec), (1, 16, 8, 8))
        out = loaded.run()
        out = out[0] if isinstance(out, list) else out
        assert tuple(out.shape) == (1, 16, 8, 8)
        loaded.release()
    else:
        with pytest.raises(HwnasError, match="onnxruntime-gpu"):
            make_runner(load_profile("cuda-ort"))


def test_runner_plugins_share_one_interface():
    import torch

    from hwnas.blocks import build_block
    from hwnas.latency.runtime import make_runner
    from hwnas.space import BlockSpec

    spec = BlockSpec.parse_key("8x8x16:ir_k3_e3_c16_s1_se_hs")
    torch_threads = torch.get_num_threads()
    try:
        for name in ("cpu-ort-1t", "cpu-torch-1t"):
            loaded = make_runner(load_profile(name)).load(build_block(spec), (1, 16, 8, 8))
            assert isinstance(loaded, Loaded)
            out = loaded.run()
            out = out[0] if isinstance(out, list) else out
            assert tuple(out.shape) == (1, 16, 8, 8)
            loaded.release()
    finally:
        torch.set_num_threads(torch_threads)
    from hwnas.latency.runtime import _RUNNERS

    assert {"onnxruntime", "torch"} <= set(_RUNNERS)  # plug-ins: one entry each (executorch adds itself the same way)
