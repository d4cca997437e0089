"""Command-line paths not covered elsewhere, each checked on what it writes (issue 27, item 9):

- `hwnas train --mode fbnet|proxyless|darts|enas`: arch.json, alpha_history.json, config.json, metrics.csv, --json;
- `hwnas search --strategy rl` and `--strategy differentiable` (on a latency-aware run's arch.json): search.json;
- `hwnas export --int8`, `--finetune-epochs 1`, `--format pte`: model_card.json and the files it describes;
- `hwnas report RUN` of a latency-aware run: alpha.png (and pareto.png once a search ran there).

Shared runs are module-scoped: one supernet on the synthetic dataset (2,048 images, so one fine-tune epoch is a few
steps; on Fashion-MNIST it is 430 steps, minutes on 2 cores) and one latency-aware run per mode on Fashion-MNIST
(2 epochs of 2 steps). Latency is measured with the shipped profiles cut to a few timed runs (same names, so the
committed cpu-ort-1t table still prices the archs).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hwnas.cli.main import main
from hwnas.latency import LatencyPredictor, latency_range_ms, load_lut
from hwnas.space import Arch, check_arch, get_space, smallest, space_hash, with_io

REPO = Path(__file__).resolve().parents[1]
LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"
SPACE = with_io(get_space("mbv3-tiny"), in_channels=1, num_classes=10)  # Fashion-MNIST and synthetic: 1 channel
NAS_TARGET_MS = 0.2
QUICK = {"warmup_s": 0.05, "warmup": 1, "rounds": 2, "repeats": 3, "remeasure": 0}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _predict_ms(arch: str) -> float:
    return LatencyPredictor(load_lut(LUT, space=SPACE), SPACE).predict(Arch.parse(arch))


def _main_json(argv: list[str]) -> dict:
    """`main(argv)` with --json from a module fixture (no capsys there): its stdout parsed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--json"])
    assert code == 0, err.getvalue()[-2000:]
    return json.loads(out.getvalue())


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what earlier calls left
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _pick(d: dict, keys: Iterable[str]) -> dict:
    return {k: d.get(k) for k in keys}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 OpenMP threads on a busy 2-core machine are many times slower than 1
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli_paths")


@pytest.fixture(scope="module")
def profiles(root: Path) -> dict[str, Path]:
    """The shipped cpu-ort-1t and cpu-et-xnnpack-1t profiles with a short protocol, under their own names."""
    folder = root / "profiles"
    folder.mkdir()
    paths = {}
    for name in ("cpu-ort-1t", "cpu-et-xnnpack-1t"):
        data = yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({**data, **QUICK}))
    return paths


@pytest.fixture(scope="module")
def supernet_run(root: Path) -> Path:
    run = root / "supernet"
    argv = "train --space mbv3-tiny --dataset synthetic --max-steps 2 --batch-size 8 --no-progress --out".split()
    summary = _main_json([*argv, str(run)])
    assert summary["steps"] == 2 and (run / "checkpoint.pt").is_file()
    return run


@pytest.fixture(scope="module")
def nas_run(root: Path, fashion_dir: Path) -> Callable[[str], tuple[Path, dict]]:
    """`nas_run(mode)`: (run folder, --json summary) of a 2×2-step latency-aware run of `mode`, trained once."""
    runs: dict[str, tuple[Path, dict]] = {}

    def get(mode: str) -> tuple[Path, dict]:
        if mode not in runs:
            run = root / f"nas-{mode}"
            argv = f"train --mode {mode} --space mbv3-tiny --dataset fashion-mnist --target-ms {NAS_TARGET_MS} "
            argv += "--epochs 2 --steps-per-epoch 2 --batch-size 16 --warmup-epochs 0 --no-progress"
            paths = ["--data-dir", str(fashion_dir), "--lut", str(LUT), "--out", str(run)]
            summary = _main_json([*argv.split(), *paths])
            runs[mode] = run, summary
        return runs[mode]

    return get


# ---- hwnas train --mode fbnet|proxyless|darts|enas -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fbnet", "proxyless", "darts", "enas"])
def test_latency_aware_training_writes_its_run_files(mode: str, nas_run: Callable[[str], tuple[Path, dict]]) -> None:
    run, summary = nas_run(mode)
    assert sorted(p.name for p in run.iterdir()) == [
        "alpha_history.json",
        "arch.json",
        "checkpoint.pt",
        "config.json",
        "metrics.csv",
    ]
    arch_json = json.loads((run / "arch.json").read_text())
    history = json.loads((run / "alpha_history.json").read_text())
    config = json.loads((run / "config.json").read_text())

    # arch.json: the derived arch (canonical, in the space, near the target) and the per-layer argmax, both priced
    arch = arch_json["arch"]
    assert str(check_arch(SPACE, Arch.parse(arch))) == arch
    expected = dict(mode=mode, target_ms=NAS_TARGET_MS, epochs=2, steps=4, resolution=28, device="cpu-ort-1t")
    assert _pick(arch_json, expected) == expected and Path(arch_json["lut"]) == LUT
    assert arch_json["predicted_ms"] == pytest.approx(_predict_ms(arch), rel=1e-9)
    assert arch_json["argmax_ms"] == pytest.approx(_predict_ms(arch_json["argmax_arch"]), rel=1e-9)
    assert abs(arch_json["predicted_ms"] / NAS_TARGET_MS - 1) <= 0.05  # the most probable arch within ±5% of T
    low, high = latency_range_ms(LatencyPredictor(load_lut(LUT, space=SPACE), SPACE))
    assert low <= arch_json["expected_ms"] <= high
    alpha = arch_json["alpha"]  # per stage, per position: {choice: p} (+ 'skip' where the layer is optional)
    assert len(alpha) == len(SPACE.stages)
    for stage in alpha:
        assert all(sum(row.values()) == pytest.approx(1.0, abs=1e-4) for row in stage)
    for s, layers in enumerate(arch_json["argmax_arch"].split("/")[1:]):
        for p, layer in enumerate(layers.split(",")):
            assert alpha[s][p][layer] == max(alpha[s][p].values()), (s, p, layer)

    # alpha_history.json: one entry per epoch; the last one is the α arch.json reports
    assert history["target_ms"] == NAS_TARGET_MS
    assert len(history["choices"]) == len(SPACE.stages) and all(c[-1] == "skip" for c in history["choices"])
    epochs = history["epochs"]
    assert [(e["epoch"], e["step"]) for e in epochs] == [(0, 2), (1, 4)]
    probs = np.array(epochs[-1]["probs"])
    assert probs.shape[:2] == (len(SPACE.stages), max(max(st.depths) for st in SPACE.stages))
    assert np.allclose(probs.sum(axis=-1), 1.0, atol=1e-4)  # stored rounded to 5 decimals
    for s, stage in enumerate(alpha):
        for p, row in enumerate(stage):
            for choice, prob in row.items():
                assert probs[s, p, history["choices"][s].index(choice)] == pytest.approx(prob, abs=1e-5)
    last = epochs[-1]
    assert (last["arch"], last["argmax_arch"]) == (arch, arch_json["argmax_arch"])
    assert last["expected_ms"] == arch_json["expected_ms"] and last["latency_scale"] == 1.0  # --adapt-rate 0
    taus = [e["tau"] for e in epochs]
    if mode == "fbnet":  # Gumbel-softmax temperature decays from tau0
        assert 0 < taus[1] < taus[0] < config["nas"]["tau0"]
    else:
        assert taus == [1.0, 1.0]
    enas_metrics, alpha_metrics = {"reward", "baseline", "sampled_ms", "val_acc"}, {"arch_loss", "val_ce", "val_acc"}
    arch_metrics = enas_metrics if mode == "enas" else alpha_metrics
    assert arch_metrics <= set(last)  # α trained in these epochs (--warmup-epochs 0)

    # config.json: what the run was trained with
    expected = dict(kind="nas", dataset="fashion-mnist", device="cpu-ort-1t", resolution=28)
    assert _pick(config, expected) == expected
    gpu = torch.cuda.is_available()  # the torch device and precision it ran with: facts beside the LUT's device
    torch_device, amp = ("cuda:0", "bf16") if gpu else ("cpu", "none")
    assert (config["torch_device"], config["amp_used"], config["nas"]["amp"]) == (torch_device, amp, "auto")
    assert config["space"]["hash"] == space_hash(SPACE) and Path(config["lut"]) == LUT
    expected = dict(mode=mode, target_ms=NAS_TARGET_MS, epochs=2, steps_per_epoch=2, warmup_epochs=0, batch_size=16)
    assert _pick(config["nas"], expected) == expected and config["nas"]["max_steps"] is None

    # metrics.csv: one row per epoch; checkpoint at the end; --json summary = arch.json
    assert [(r["epoch"], r["step"]) for r in _rows(run / "metrics.csv")] == [("0", "2"), ("1", "4")]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ckpt["step"], ckpt["total_steps"]) == (4, 4)
    assert summary == {
        "run": str(run),
        "arch": arch,
        "predicted_ms": round(arch_json["predicted_ms"], 4),
        "expected_ms": round(arch_json["expected_ms"], 4),
        "target_ms": NAS_TARGET_MS,
        "epochs": 2.0,
        "steps": 4,
        "torch_device": torch_device,
        "amp": amp,
    }


# ---- hwnas search --strategy rl | differentiable ---------------------------------------------------------------------

RL_BUDGET_MS = 0.25  # most archs fit: the policy's samples are scored, none needs a repair


@pytest.fixture(scope="module")
def rl_search(root: Path, supernet_run: Path) -> tuple[Path, dict]:
    out = root / "rl"
    argv = f"search --strategy rl --budget-ms {RL_BUDGET_MS} --evaluations 4 --val-images 64 --calib-images 32 --seed 1"
    summary = _main_json([*argv.split(), "--run", str(supernet_run), "--lut", str(LUT), "--out", str(out)])
    return out, summary


def test_search_rl_writes_a_winner_within_budget(rl_search: tuple[Path, dict], supernet_run: Path) -> None:
    out, summary = rl_search
    search = json.loads((out / "search.json").read_text())
    expected = dict(strategy="rl", scorer="measured", budget_ms=RL_BUDGET_MS, evaluated=4, run=str(supernet_run))
    assert _pick(search, expected) == expected
    expected = dict(device="cpu-ort-1t", space="mbv3-tiny", space_hash=space_hash(SPACE))
    assert _pick(search, expected) == expected and Path(search["lut"]) == LUT
    assert search["predicted_ms"] <= RL_BUDGET_MS
    assert search["predicted_ms"] == pytest.approx(_predict_ms(search["arch"]), abs=1e-6)
    assert search["extra"]["cache"]["misses"] == 4 and search["budgets"][0]["notes"]["policy_updates"] >= 1
    cands = _rows(out / "candidates.csv")
    assert len(cands) == 4 and {c["strategy"] for c in cands} == {"rl"}
    assert len({c["arch"] for c in cands}) == 4  # 4 distinct archs scored
    feasible = [c for c in cands if float(c["predicted_ms"]) <= RL_BUDGET_MS]
    winners = [c for c in cands if c["winner"] == "True"]
    assert [w["arch"] for w in winners] == [search["arch"]]
    assert float(winners[0]["accuracy"]) == max(float(c["accuracy"]) for c in feasible)
    assert summary["scorer"] == "measured" and summary["accuracy"] == pytest.approx(search["accuracy"], abs=1e-6)
    same = ("arch", "predicted_ms", "budget_ms", "evaluated")
    assert _pick(summary, same) == _pick(search, same)


def test_search_differentiable_takes_the_trained_arch_or_repairs_it(
    nas_run: Callable[[str], tuple[Path, dict]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = nas_run("darts")
    trained = json.loads((run / "arch.json").read_text())
    trained_ms = _predict_ms(trained["arch"])
    low, _ = latency_range_ms(LatencyPredictor(load_lut(LUT, space=SPACE), SPACE))
    tight, loose = round((low + trained_ms) / 2, 4), round(trained_ms * 1.2, 4)  # below / above the trained arch
    argv = f"search --strategy differentiable --budgets {tight},{loose} --val-images 64 --calib-images 32 --json"
    code, out, err = _cli(capsys, [*argv.split(), "--run", str(run), "--lut", str(LUT), "--out", str(tmp_path)])
    assert code == 0, err
    printed = json.loads(out)
    search = json.loads((tmp_path / "search.json").read_text())
    assert search["strategy"] == "differentiable" and [b["budget_ms"] for b in search["budgets"]] == [tight, loose]
    repaired, kept = search["budgets"]
    assert kept["arch"] == trained["arch"] and kept["notes"]["repaired"] == 0
    assert kept["predicted_ms"] == pytest.approx(trained_ms, abs=1e-6)
    assert repaired["notes"] == {
        "trained_arch": trained["arch"],
        "trained_arch_ms": pytest.approx(trained_ms),
        "repaired": 1,
    }
    assert repaired["arch"] != trained["arch"] and repaired["predicted_ms"] <= tight
    assert repaired["predicted_ms"] == pytest.approx(_predict_ms(repaired["arch"]), abs=1e-6)
    assert all(b["evaluated"] == 1 and b["strategy"] == "differentiable" for b in search["budgets"])
    assert all(0 <= b["accuracy"] <= 1 for b in search["budgets"])
    assert [p["arch"] for p in printed] == [repaired["arch"], kept["arch"]]
    assert len(_rows(tmp_path / "candidates.csv")) == 2


# ---- hwnas export --int8 | --finetune-epochs | --format pte ----------------------------------------------------------


@pytest.fixture(scope="module")
def int8_export(
    root: Path, supernet_run: Path, rl_search: tuple[Path, dict], profiles: dict[str, Path]
) -> tuple[Path, dict]:
    out = root / "export-int8"
    paths = ["--run", str(supernet_run), "--search", str(rl_search[0] / "search.json"), "--out", str(out)]
    summary = _main_json(
        [*"export --int8 --parity-images 32 --test-images 100".split(), *paths, "--target", str(profiles["cpu-ort-1t"])]
    )
    return out, summary


def test_export_int8_from_a_search(int8_export: tuple[Path, dict], rl_search: tuple[Path, dict]) -> None:
    import onnx

    from hwnas.export import read_onnx_metadata

    out, summary = int8_export
    search = json.loads((rl_search[0] / "search.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx", "model.onnx", "model_card.json"]
    card = json.loads((out / "model_card.json").read_text())
    assert card["arch"] == search["arch"] == read_onnx_metadata(out / "model.onnx")["hwnas.arch"]
    for role, name in (("onnx", "model.onnx"), ("int8", "model.int8.onnx")):
        assert card["files"][role] == {
            "path": name,
            "bytes": (out / name).stat().st_size,
            "sha256": _sha256(out / name),
        }
    ops = {n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ

    acc = card["accuracy"]
    assert acc["n_images"] == 100 and 0 <= acc["int8_test_acc"] <= 1
    assert acc["int8_drop_pp"] == round(100 * (acc["test_acc"] - acc["int8_test_acc"]), 3)
    lat = card["latency"]
    assert lat["device"] == "cpu-ort-1t" and lat["profile"]["rounds"] == QUICK["rounds"]
    assert lat["measured_ms"] > 0 and lat["int8_measured_ms"] > 0
    assert lat["int8_speedup"] == round(lat["measured_ms"] / lat["int8_measured_ms"], 3)
    assert Path(lat["lut"]) == LUT and lat["predicted_ms"] == pytest.approx(search["predicted_ms"], abs=1e-6)
    assert lat["predicted_error"] == round(lat["predicted_ms"] / lat["measured_ms"] - 1, 4)
    assert card["training"]["finetune_epochs"] == 0 and card["training"]["int8_calib_images"] == 512
    assert card["parity"]["n_images"] == 32 and card["parity"]["top1_agreement"] == 1.0
    assert summary["int8"] == {
        "onnx": str(out / "model.int8.onnx"),
        "test_acc": acc["int8_test_acc"],
        "measured_ms": lat["int8_measured_ms"],
    }
    assert summary["test_acc"] == acc["test_acc"] and summary["pte"] is None


@pytest.mark.slow  # one KD epoch over the synthetic train split plus an export: ~20 s on 2 busy cores
def test_export_finetune_one_epoch(
    supernet_run: Path,
    int8_export: tuple[Path, dict],
    profiles: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import onnx
    from onnx import numpy_helper

    plain = int8_export[0]
    arch = json.loads((plain / "model_card.json").read_text())["arch"]
    out = tmp_path / "ft"
    argv = "export --finetune-epochs 1 --parity-images 32 --test-images 100 --json".split()
    paths = ["--run", str(supernet_run), "--arch", arch, "--out", str(out), "--target", str(profiles["cpu-ort-1t"])]
    code, stdout, err = _cli(capsys, [*argv, *paths])
    assert code == 0, err
    assert "fine-tune epoch 1/1" in err
    summary = json.loads(stdout)
    card = json.loads((out / "model_card.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model_card.json"]
    assert card["arch"] == arch and card["training"]["finetune_epochs"] == 1
    assert card["files"]["int8"] is None and summary["int8"] is None
    assert summary["test_acc"] == card["accuracy"]["test_acc"] and card["parity"]["top1_agreement"] == 1.0
    assert card["latency"]["predicted_ms"] == pytest.approx(_predict_ms(arch)) and card["latency"]["measured_ms"] > 0

    def weights(path: Path) -> dict[str, np.ndarray]:
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}

    tuned, untuned = weights(out / "model.onnx"), weights(plain / "model.onnx")
    assert tuned.keys() == untuned.keys()  # same arch, same graph ...
    assert any(not np.allclose(tuned[k], untuned[k]) for k in tuned)  # ... other (fine-tuned) weights


@pytest.mark.slow  # lowers a subnet with ExecuTorch + XNNPACK: ~15-40 s on 2 cores
def test_export_pte_with_parity_and_latency(
    supernet_run: Path, profiles: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    from hwnas.export.pte import pte_logits

    arch = str(smallest(SPACE, resolution=28))  # the cheapest subnet to lower
    out = tmp_path / "pte"
    argv = "export --format pte --parity-images 16 --test-images 50 --json".split()
    paths = ["--run", str(supernet_run), "--arch", arch, "--out", str(out), "--target", str(profiles["cpu-ort-1t"])]
    code, stdout, err = _cli(capsys, [*argv, *paths, "--pte-target", str(profiles["cpu-et-xnnpack-1t"])])
    assert code == 0, err
    summary = json.loads(stdout)
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.pte", "model_card.json"]
    card = json.loads((out / "model_card.json").read_text())
    pte = card["pte"]
    assert summary["pte"] == pte and card["arch"] == arch
    assert pte["file"] == {
        "path": "model.pte",
        "bytes": (out / "model.pte").stat().st_size,
        "sha256": _sha256(out / "model.pte"),
    }
    assert pte["runtime"].startswith("executorch ") and pte["delegate"] == "XnnpackPartitioner"
    assert pte["parity"]["n_images"] == 16 and pte["parity"]["max_abs_diff"] <= 1e-4
    assert pte["parity"]["top1_agreement"] == 1.0
    assert pte["latency"]["device"] == "cpu-et-xnnpack-1t" and pte["latency"]["measured_ms"] > 0
    if pte["latency"]["predicted_ms"] is not None:  # only when a cpu-et-xnnpack-1t table is committed
        assert pte["latency"]["predicted_error"] == round(
            pte["latency"]["predicted_ms"] / pte["latency"]["measured_ms"] - 1, 4
        )
    # the files on disk agree with each other: ExecuTorch runs model.pte as onnxruntime runs model.onnx
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(pte_logits(out / "model.pte", x) - ref).max() <= 1e-4


# ---- hwnas report RUN (latency-aware run) ----------------------------------------------------------------------------


def test_report_of_a_latency_aware_run_draws_alpha(
    nas_run: Callable[[str], tuple[Path, dict]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, _ = nas_run("fbnet")
    run = tmp_path / "run"
    shutil.copytree(source, run)
    code, out, err = _cli(capsys, ["report", str(run)])
    assert code == 0, err
    png = run / "alpha.png"
    assert out.strip() == f"wrote {png}"
    assert _png_size(png) == (1540, 462)  # the 3-panel figure (14 × 4.2 in at 110 dpi)
    assert png.stat().st_size > 20_000  # curves drawn, not an empty canvas
    assert not (run / "pareto.png").exists()  # no search ran here yet
    # once a search wrote its results into the run, the report draws both plots
    argv = "search --strategy differentiable --budget-ms 0.3 --val-images 32 --calib-images 32".split()
    code, _, err = _cli(capsys, [*argv, "--run", str(run), "--lut", str(LUT)])
    assert code == 0, err
    code, out, err = _cli(capsys, ["report", str(run)])
    assert code == 0, err
    assert out.split() == ["wrote", str(png), "wrote", str(run / "pareto.png")]
    assert _png_size(run / "pareto.png") == (840, 540) and (run / "pareto.png").stat().st_size > 10_000
