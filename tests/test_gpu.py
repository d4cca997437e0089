"""The CUDA paths, run whenever CUDA is present (`pytest -m gpu` selects only these; plain `pytest` runs them too) and
skipped with the reason "CUDA not available" otherwise.

Each mirrors a CPU test of the same path: BigNAS sandwich steps with bf16 autocast and channels_last (tests/test_train.py),
fp16 with its GradScaler state resumed, a fbnet α step with the LUT's expected latency (tests/test_nas_modes.py), a
measured search of 4 candidates through the CLI (tests/test_search_cli.py), `cuda-torch` timing of two blocks
(tests/test_latency_harness.py), and export parity of a CUDA-trained run (tests/test_export_pipeline.py). A run trained
on the GPU resumes on the CPU: the device is not part of a run's identity.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch
from train_config import small_config

from hwnas.cli.main import main
from hwnas.data import Dataset, load_dataset, make_batch, resize

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
ARCH = "r28/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3"  # a small mbv3-tiny subnet at Fashion-MNIST's 28 px
QUICK = {"warmup_s": 0.05, "warmup": 1, "rounds": 2, "repeats": 3, "max_cv": 0.5, "remeasure": 0}


def _cfg(mode: str = "bignas", **kw: object):  # noqa: ANN202 - TrainConfig
    return small_config(mode, **{"batch_size": 8, "checkpoint_every": 1, **kw})


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("amp", "dtype"), [("bf16", torch.bfloat16), ("none", torch.float32)])
def test_bignas_step_with_autocast_and_channels_last_on_cuda(amp: str, dtype: torch.dtype, synthetic: Dataset) -> None:
    """bf16: autocast's plain convolutions; none: float32 through the supernet's own depthwise backward on CUDA."""
    from hwnas.space import get_space, largest, with_io
    from hwnas.supernet import Supernet
    from hwnas.train import StepContext, load_strategy

    device = torch.device("cuda")
    cfg = _cfg(amp=amp)
    space = with_io(
        get_space(cfg.space, width=cfg.width), in_channels=synthetic.channels, num_classes=synthetic.num_classes
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Supernet(space)
    net = net.to(device).to(memory_format=torch.channels_last).train()
    ctx = StepContext(supernet=net, space=space, cfg=cfg, device=device, rng=random.Random(0), amp=amp)
    images, labels = make_batch(synthetic.train, torch.arange(8), device=device)

    # inside the step's autocast the network runs at the run's precision on channels_last activations ...
    x = resize(images, largest(space).resolution).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), ctx.autocast():
        probe = net(x, largest(space))
    assert probe.dtype == dtype and probe.device.type == "cuda"

    # ... and the sandwich step (largest on labels, smallest + random on its soft labels) leaves float32 gradients
    params = [p for p in net.parameters()]
    before = [p.detach().clone() for p in params]
    losses = load_strategy("bignas").train_step(ctx, images, labels)
    assert set(losses) == {"loss", "loss_kd"} and all(math.isfinite(v) for v in losses.values()) and losses["loss"] > 0
    grads = [p.grad for p in params if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and bool(torch.isfinite(g).all()) for g in grads)
    torch.optim.SGD(params, lr=0.1).step()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, params))
    assert all(p.dtype == torch.float32 for p in params)  # the master weights stay float32


@pytest.mark.gpu
@needs_cuda
def test_a_run_trained_on_cuda_resumes_on_the_cpu(synthetic: Dataset, tmp_path: Path) -> None:
    from hwnas.train import load_run, train

    cfg = _cfg()  # amp "auto": bf16 on CUDA, none on the CPU
    gpu = train(cfg, tmp_path, data=synthetic, progress=False, device="cuda")
    assert (gpu.torch_device, gpu.amp, gpu.steps) == ("cuda:0", "bf16", 2)
    assert 0.0 <= gpu.val_acc_max <= 1.0 and 0.0 <= gpu.val_acc_min <= 1.0  # evaluated in float32
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["torch_device"], config["amp"], config["amp_used"], config["channels_last"]) == (
        "cuda:0",
        "auto",
        "bf16",
        True,
    )
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # as written: tensors of the CUDA run
    assert any(t.device.type == "cuda" for t in saved["model"].values())
    on_cpu = load_run(tmp_path)  # search and export load it anywhere (map_location)
    assert next(on_cpu.supernet.parameters()).device.type == "cpu" and on_cpu.step == 2

    cpu = train(
        dataclasses.replace(cfg, max_steps=3), tmp_path, resume=True, data=synthetic, progress=False, device="cpu"
    )
    assert (cpu.torch_device, cpu.amp, cpu.steps) == ("cpu", "none", 3)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["torch_device"], config["amp_used"]) == ("cpu", "none")
    run = load_run(tmp_path)
    assert run.step == 3 and run.config.amp == "auto"  # the setting, not the device's resolution of it
    with open(tmp_path / "metrics.csv") as fh:
        devices = [row.split(",")[-1].strip() for row in fh.read().splitlines()[1:]]
    assert {d for d in devices if d} == {"cuda:0", "cpu"}  # each logged interval says where it ran


@pytest.mark.gpu
@needs_cuda
def test_fp16_training_scales_the_loss_and_resumes_its_grad_scaler(synthetic: Dataset, tmp_path: Path) -> None:
    from hwnas.errors import HwnasError
    from hwnas.train import read_checkpoint, train
    from hwnas.train.checkpoint import save_checkpoint

    cfg = _cfg(amp="fp16")
    result = train(cfg, tmp_path, data=synthetic, progress=False, device="cuda")
    assert result.amp == "fp16" and math.isfinite(result.val_acc_max)
    payload = read_checkpoint(tmp_path / "checkpoint.pt")
    assert payload["scaler"]["scale"] > 0 and "_growth_tracker" in payload["scaler"]
    # a resume continues the stored scaler: plant a scale no fresh GradScaler starts from (2**16) and see it carried on
    payload["scaler"]["scale"] = 1024.0
    save_checkpoint(tmp_path / "checkpoint.pt", payload)
    train(dataclasses.replace(cfg, max_steps=3), tmp_path, resume=True, data=synthetic, progress=False, device="cuda")
    assert read_checkpoint(tmp_path / "checkpoint.pt")["scaler"]["scale"] in (1024.0, 512.0)  # kept, or backed off once
    # fp16 is CUDA-only: the run cannot continue on the CPU in it, and says how to
    with pytest.raises(HwnasError, match="--amp fp16 needs a CUDA device"):
        train(
            dataclasses.replace(cfg, max_steps=4), tmp_path, resume=True, data=synthetic, progress=False, device="cpu"
        )


@pytest.mark.gpu
@needs_cuda
def test_fbnet_step_with_the_luts_expected_latency_on_cuda(tmp_path: Path) -> None:
    from search_lut import synthetic_table

    from hwnas.space import get_space
    from hwnas.supernet import Supernet
    from hwnas.train import fbnet
    from hwnas.train.arch_params import ArchParams
    from hwnas.train.expected_latency import expected_latency_ms, latency_arrays
    from hwnas.train.nas_config import NasConfig
    from hwnas.train.nas_loop import load_nas_checkpoint, train_nas
    from hwnas.train.nas_state import NasState

    device = torch.device("cuda")
    space = get_space("mbv3-tiny", width=0.25)
    table = synthetic_table(space, resolutions=(28,))
    data = load_dataset("synthetic", val_size=128, synthetic_size=512)
    params = ArchParams(space, resolution=28).to(device)
    arrays = latency_arrays(table, space, params).to(device)
    on_cpu = ArchParams(space, resolution=28)
    with torch.no_grad():
        lat = expected_latency_ms(params.probs(torch.float64), arrays)
        lat_cpu = expected_latency_ms(on_cpu.probs(torch.float64), latency_arrays(table, space, on_cpu))
    assert lat.device.type == "cuda" and float(lat) == pytest.approx(float(lat_cpu), rel=1e-9)

    cfg = NasConfig(mode="fbnet", target_ms=0.5 * float(lat), alpha_lr=0.05)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Supernet(space)
    opt = torch.optim.Adam([params.logits], lr=cfg.alpha_lr)
    state = NasState(net.to(device).train(), params, arrays, cfg, torch.Generator().manual_seed(0), opt, amp="bf16")
    x, y = make_batch(data.val, torch.arange(16), resolution=28, device=device)
    before = params.logits.detach().clone()
    metrics = fbnet.arch_step(state, x, y)  # Gumbel gates sampled on the CPU generator, forward in bf16 on the GPU
    assert metrics["expected_ms"] == pytest.approx(float(lat)) and math.isfinite(metrics["arch_loss"])
    assert not torch.equal(before, params.logits.detach()) and torch.isfinite(params.logits).all()
    with torch.no_grad():
        moved = float(expected_latency_ms(params.probs(torch.float64), arrays))
    assert moved != pytest.approx(float(lat), rel=1e-12)

    # the whole loop on the GPU, fp16: both loss scalers are checkpointed, the device is recorded as a fact
    run = train_nas(
        space,
        data,
        table,
        NasConfig(
            mode="fbnet", target_ms=float(lat), epochs=1, max_steps=3, warmup_epochs=0, batch_size=16, amp="fp16"
        ),
        out_dir=tmp_path,
        device="cuda",
        progress=False,
    )
    assert run.steps == 3 and math.isfinite(run.expected_ms)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["torch_device"], config["amp_used"]) == ("cuda:0", "fp16")
    nas = load_nas_checkpoint(tmp_path / "checkpoint.pt")["nas"]
    assert nas["scaler"]["scale"] > 0 and nas["alpha_scaler"]["scale"] > 0 and torch.isfinite(nas["alpha"]).all()


@pytest.mark.gpu
@needs_cuda
def test_measured_search_of_4_candidates_on_cuda_through_the_cli(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from search_lut import write_table
    from search_run import write_untrained_run

    from hwnas.latency.lut import load_lut
    from hwnas.search import gene_latency_from_lut
    from hwnas.space import get_space

    space = get_space("mbv3-tiny")
    lut = write_table(space, tmp_path / "lut" / "mbv3-tiny.csv")
    run = write_untrained_run(space, tmp_path / "run")
    lat = gene_latency_from_lut(load_lut(lut), space)
    lo, hi = lat.min_ms()[0], lat.max_ms()[0]
    budget = round(lo + 0.3 * (hi - lo), 5)
    argv = ["search", "--run", str(run), "--lut", str(lut), "--budget-ms", str(budget), "--evaluations", "4"]
    argv += ["--population", "2", "--val-images", "64", "--calib-images", "64", "--seed", "3", "--device", "cuda"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["torch_device"] == "cuda:0" and out["scorer"] == "measured" and out["evaluated"] == 4
    assert out["predicted_ms"] <= budget and 0.0 <= out["accuracy"] <= 1.0
    saved = json.loads((run / "search.json").read_text())
    assert saved["arch"] == out["arch"] and saved["torch_device"] == "cuda:0"
    rows = (run / "candidates.csv").read_text().strip().splitlines()
    assert len(rows) - 1 >= 4  # every measured candidate is listed


@pytest.mark.gpu
@needs_cuda
def test_cuda_torch_times_two_blocks_on_the_gpu() -> None:
    from hwnas.blocks import build_block
    from hwnas.latency import load_profile
    from hwnas.latency.harness import measure_block
    from hwnas.latency.runtime import make_runner
    from hwnas.space import BlockSpec

    profile = dataclasses.replace(load_profile("cuda-torch"), warmup_s=0.2, warmup=3, rounds=3, repeats=10)
    assert profile.clock == "wall"  # a GPU runs on its own: only the wall clock sees it (each run ends in a sync)
    runner = make_runner(profile)
    specs = [BlockSpec.parse_key("8x8x16:ir_k3_e3_c16_s1_se_hs"), BlockSpec.parse_key("16x16x16:ir_k7_e6_c24_s2_re")]
    for spec in specs:
        shape = (profile.batch, spec.in_ch, spec.in_hw, spec.in_hw)
        loaded = runner.load(build_block(spec), shape)
        out = loaded.run()
        assert isinstance(out, torch.Tensor) and out.device.type == "cuda"
        assert tuple(out.shape) == (1, spec.out_ch, spec.out_hw, spec.out_hw)
        loaded.release()
        stats = measure_block(spec, shape, runner=runner)
        assert 0.0 < stats.p50_ms < 100.0 and stats.p90_ms > 0.0 and math.isfinite(stats.cv)
        assert stats.n >= profile.rounds * profile.repeats


@pytest.mark.gpu
@pytest.mark.slow  # a one-epoch KD fine-tune of Fashion-MNIST on the GPU and three exports
@needs_cuda
def test_export_parity_of_a_cuda_trained_run(tmp_path: Path, capsys, fashion_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    import yaml

    from hwnas.export.finetune import FinetuneConfig
    from hwnas.export.parity import onnx_logits
    from hwnas.export.pipeline import ExportConfig, export_run
    from hwnas.space import Arch
    from hwnas.train import TrainConfig, train

    cfg = TrainConfig(
        space="mbv3-tiny",
        dataset="fashion-mnist",
        data_dir=str(fashion_dir),
        mode="bignas",
        epochs=1.0,
        max_steps=4,
        batch_size=32,
        val_size=64,
        recal_batches=1,
        eval_batch_size=64,
        checkpoint_every=10,
    )
    assert train(cfg, tmp_path / "run", progress=False, device="cuda").amp == "bf16"
    arch = Arch.parse(ARCH)

    def export(device: str, out: str, finetune_epochs: int = 0):  # noqa: ANN202 - ExportResult
        settings = ExportConfig(
            device=device,
            finetune=FinetuneConfig(epochs=finetune_epochs),
            measure=False,
            parity_images=300,
            test_images=500,
            recalib_batches=2,
            calib_images=64,
        )
        return export_run(tmp_path / "run", arch, tmp_path / out, cfg=settings)

    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    on_gpu = export("cuda", "gpu", finetune_epochs=1)
    assert on_gpu.torch_device == "cuda:0"
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == tf32  # off only for the checks
    # the float32 reference on the GPU (TF32 off) against onnxruntime on the CPU, on real test images
    assert on_gpu.parity.n_images == 300 and on_gpu.parity.max_abs_diff <= 1e-4 and on_gpu.parity.top1_agreement == 1.0
    card = json.loads(on_gpu.card.read_text())
    assert card["parity"]["torch_device"] == card["training"]["torch_device"] == "cuda:0"
    assert card["training"]["finetune_epochs"] == 1
    assert ort.InferenceSession(str(on_gpu.onnx), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1:] == [
        1,
        28,
        28,
    ]

    # the same export without fine-tune on the GPU and on the CPU computes the same model
    plain = {device: export(device, device) for device in ("cuda", "cpu")}
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert abs(onnx_logits(plain["cuda"].onnx, x) - onnx_logits(plain["cpu"].onnx, x)).max() < 1e-2
    assert abs(plain["cuda"].test_acc - plain["cpu"].test_acc) <= 0.02

    # the CLI: --device is the torch device, --target the latency profile (timed by onnxruntime on the CPU)
    quick = tmp_path / "quick.yaml"
    quick.write_text(yaml.safe_dump({"name": "quick", "calib_subnets": 0, **QUICK}))
    argv = ["export", "--run", str(tmp_path / "run"), "--arch", ARCH, "--out", str(tmp_path / "cli")]
    argv += ["--device", "cuda", "--target", str(quick), "--parity-images", "100", "--test-images", "200", "--json"]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["torch_device"] == "cuda:0" and payload["max_abs_diff"] <= 1e-4 and payload["measured_ms"] > 0
