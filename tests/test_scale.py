"""`hwnas search --strategy scale` end to end: the rows a compound-scaled arch needs are timed on demand on the LUT's
device, cached next to the LUT and reused; the winner fits its budget and exports with a fine-tune and ONNX parity.

Real components throughout: a real (2-step) training run, the committed tiny table (copied), the real timing harness and
onnxruntime. The copied table's profile asks for a 1 s warm-up instead of 5 s, so the on-demand rows time quickly; and
the export fine-tunes on the first images of Fashion-MNIST (an idx subset passed as the run's data folder).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hwnas.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"
BASE_ARCH = "r28/k3e4,k5e3/k3e3,k5e4/k5e4,k3e3/k3e4,k3e3/k5e3,k3e4"
BUDGET_MS = 0.18


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_lut(dest: Path, **profile: object) -> Path:
    """The committed tiny table, its meta saying it was measured on this CPU (so loading it logs no other-CPU warning)
    and with `profile` fields overriding its device profile."""
    from hwnas.machine import cpu_model, cpu_signature

    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(TINY_LUT, dest)
    meta = json.loads(TINY_LUT.with_name("mbv3-tiny.meta.json").read_text())
    meta.update(cpu=cpu_model(), cpu_signature=cpu_signature(), profile={**meta["profile"], **profile})
    dest.with_name(dest.stem + ".meta.json").write_text(json.dumps(meta))
    return dest


def _idx_subset(src: Path, dest: Path, *, train: int, test: int) -> Path:
    """The first `train` / `test` images of Fashion-MNIST as idx .gz files (the run's val split takes 5,000)."""
    dest.mkdir()
    for name, n in (
        ("train-images-idx3-ubyte.gz", train),
        ("train-labels-idx1-ubyte.gz", train),
        ("t10k-images-idx3-ubyte.gz", test),
        ("t10k-labels-idx1-ubyte.gz", test),
    ):
        raw = gzip.open(src / name).read()
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        per_item = 1
        for d in dims[1:]:
            per_item *= d
        header = raw[:4] + n.to_bytes(4, "big") + raw[8 : 4 + 4 * ndim]
        body = raw[4 + 4 * ndim : 4 + 4 * ndim + n * per_item]
        with gzip.open(dest / name, "wb", compresslevel=1) as fh:
            fh.write(header + body)
    return dest


@pytest.fixture(scope="module")
def env(tmp_path_factory, fashion_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scale")
    data = _idx_subset(fashion_dir, root / "fmnist", train=6024, test=512)
    run = root / "run"
    assert (
        main(
            [
                "train",
                "--space",
                "mbv3-tiny",
                "--dataset",
                "fashion-mnist",
                "--data-dir",
                str(data),
                "--out",
                str(run),
                "--max-steps",
                "2",
                "--batch-size",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    return {"root": root, "run": run, "lut": _copy_lut(root / "luts" / "mbv3-tiny.csv", warmup_s=1.0)}


def _json_of(argv: list[str]) -> dict:
    """Run the CLI, return its --json stdout (module fixtures cannot use the function-scoped capsys)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def searched(env) -> dict:
    """Two scale searches with the same table: the first times the missing rows, the second finds them cached."""
    lut, out = env["lut"], env["root"] / "search"
    argv = [
        "search",
        "--run",
        str(env["run"]),
        "--lut",
        str(lut),
        "--strategy",
        "scale",
        "--budget-ms",
        str(BUDGET_MS),
        "--arch",
        BASE_ARCH,
        "--out",
        str(out),
        "--json",
    ]
    lut_sha, committed_sha = _sha(lut), _sha(TINY_LUT)
    first = _json_of(argv)
    extra = lut.with_name("mbv3-tiny.extra.csv")
    extra_sha = _sha(extra)
    second = _json_of([*argv, "--force"])
    assert _sha(lut) == lut_sha and _sha(TINY_LUT) == committed_sha  # the tables themselves are never written
    return {"first": first, "second": second, "extra": extra, "extra_sha": extra_sha, "out": out}


def test_init_scaled_model_computes_the_base_arch() -> None:
    """Leading channels copied, new inputs cut off from old outputs, added layers identities: before any fine-tune the
    scaled model's eval output equals the base subnet's at the scaled resolution, for every phi."""
    import torch

    from hwnas.search.scale import ScaleConfig, ScaledArch, compound_scale, init_scaled_model
    from hwnas.space import Arch, get_space
    from hwnas.supernet import Supernet, extract

    space = get_space("mbv3-tiny")
    base = Arch.parse(BASE_ARCH)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = Supernet(space)
        for m in net.modules():  # BN statistics and affine away from their init, so copying them is tested
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
        net.eval()
        for phi in (0.25, 1.0, 3.0):
            scaled_space, arch = compound_scale(space, base, phi, cfg=ScaleConfig())
            model = init_scaled_model(net, ScaledArch(phi, scaled_space, arch, float("nan"), space, base))
            x = torch.randn(2, 1, arch.resolution, arch.resolution)
            with torch.no_grad():
                diff = (model(x) - extract(net, base)(x)).abs().max().item()
            assert sum(map(len, arch.stages)) > sum(map(len, base.stages)) and diff < 1e-5, (phi, diff)
            if phi == 3.0:
                assert scaled_space.stages[-1].out_ch > space.stages[-1].out_ch  # wider, not only deeper


def test_scale_search_times_missing_rows_once_and_fits_the_budget(env, searched) -> None:
    from hwnas.latency.lut import load_lut
    from hwnas.search.scale import missing_blocks, scaled_from_meta
    from hwnas.space import Arch

    first, second = searched["first"], searched["second"]
    assert first["rows_measured"] > 0 and first["rows_reused"] == 0 and len(first["time_base_factors"]) >= 1
    assert first["phi"] > 0 and first["predicted_ms"] <= BUDGET_MS and first["arch"] != BASE_ARCH
    # the second run measures nothing: every row comes from the cache, which is left as it was
    assert second["rows_measured"] == 0 and second["time_base_factors"] == []
    assert second["rows_reused"] > 0 and second["arch"] == first["arch"]
    assert second["predicted_ms"] == pytest.approx(first["predicted_ms"], rel=1e-4)  # rows now read from the CSV
    assert _sha(searched["extra"]) == searched["extra_sha"]

    table, extra = load_lut(env["lut"]), load_lut(searched["extra"])
    assert len(extra) >= first["rows_measured"] and not set(extra.rows) & set(table.rows)
    lo, hi = min(s.p50_ms for s in table.rows.values()), max(s.p50_ms for s in table.rows.values())
    assert all(0.2 * lo <= s.p50_ms <= 20 * hi and s.p90_ms >= 0.9 * s.p50_ms for s in extra.rows.values())
    batch = extra.meta["batches"][0]
    assert 0.5 <= batch["time_base_factor"] <= 2.0 and len(batch["references"]) == 8
    assert all(r["key"] in table for r in batch["references"])

    search = json.loads((searched["out"] / "search.json").read_text())
    scaled = search["scaled"]
    assert search["strategy"] == "scale" and search["extra_rows"] == str(searched["extra"])
    assert scaled["base_space"]["name"] == "mbv3-tiny" and scaled["base_arch"] == BASE_ARCH
    assert scaled["phi"] == first["phi"] and scaled["resolution"] == Arch.parse(first["arch"]).resolution
    assert scaled["added_depths"] == [
        len(s) - len(b) for s, b in zip(Arch.parse(first["arch"]).stages, Arch.parse(BASE_ARCH).stages)
    ]
    rebuilt = scaled_from_meta(scaled, table.space(), where="test")
    assert str(rebuilt.arch) == first["arch"] and rebuilt.space.width == scaled["width"] == first["width"]
    needed = missing_blocks(table, rebuilt.space, rebuilt.arch)
    assert needed and all(b.key in extra for b in needed)  # the winner is priced from measured rows only
    assert all(t["predicted_ms"] > BUDGET_MS for t in search["tried"] if t["phi"] > first["phi"])


def test_a_stale_cache_is_ignored(env, searched, tmp_path) -> None:
    """Rows cached for another version of the table are not on its time base: a re-profiled table ignores them."""
    from hwnas.latency.extra_rows import load_extra_rows
    from hwnas.latency.lut import load_lut

    lut = tmp_path / "mbv3-tiny.csv"
    shutil.copy(env["lut"], lut)
    shutil.copy(env["lut"].with_name("mbv3-tiny.meta.json"), tmp_path / "mbv3-tiny.meta.json")
    for suffix in (".extra.csv", ".extra.meta.json"):
        shutil.copy(env["lut"].with_name("mbv3-tiny" + suffix), tmp_path / ("mbv3-tiny" + suffix))
    assert len(load_extra_rows(load_lut(lut), lut)) > 0
    lines = lut.read_text().splitlines()
    key, p50, *rest = lines[1].split(",")
    lines[1] = ",".join([key, f"{float(p50) * 1.01:.6f}", *rest])
    lut.write_text("\n".join(lines) + "\n")
    assert len(load_extra_rows(load_lut(lut), lut)) == 0


def test_a_remote_table_says_to_bundle(env, tmp_path, capsys) -> None:
    lut = _copy_lut(tmp_path / "remote.csv", remote=True, name="pixel-remote")
    code = main(
        [
            "search",
            "--run",
            str(env["run"]),
            "--lut",
            str(lut),
            "--strategy",
            "scale",
            "--budget-ms",
            str(BUDGET_MS),
            "--arch",
            BASE_ARCH,
            "--out",
            str(tmp_path / "s"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("hwnas: error:") and err.count("\n") == 1 and "hwnas bundle" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "remote.extra.csv").exists()


def test_export_of_a_scaled_arch_needs_a_finetune(env, searched, capsys) -> None:
    code = main(
        [
            "export",
            "--run",
            str(env["run"]),
            "--search",
            str(searched["out"] / "search.json"),
            "--out",
            str(env["root"] / "refused"),
            "--finetune-epochs",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--finetune-epochs" in err and "scaled" in err
    assert not (env["root"] / "refused").exists()


@pytest.mark.slow
def test_export_of_a_scaled_arch(env, searched) -> None:
    """`hwnas export --search` of the scaled winner: built in its scaled space, initialised from the supernet,
    fine-tuned with KD, exported, parity-checked, predicted from the LUT plus its cached rows and measured; the card
    says what it is and where its accuracy comes from."""
    from hwnas.export.card import load_model_card
    from hwnas.export.onnx import read_onnx_metadata

    out = env["root"] / "export"
    summary = _json_of(
        [
            "export",
            "--run",
            str(env["run"]),
            "--search",
            str(searched["out"] / "search.json"),
            "--out",
            str(out),
            "--finetune-epochs",
            "1",
            "--test-images",
            "256",
            "--parity-images",
            "64",
            "--json",
        ]
    )
    arch = searched["first"]["arch"]
    assert Path(summary["onnx"]).is_file() and summary["max_abs_diff"] <= 1e-4 and summary["top1_agreement"] == 1.0
    assert summary["predicted_ms"] == pytest.approx(searched["second"]["predicted_ms"], rel=1e-5)
    assert summary["measured_ms"] > 0 and summary["scaled"]["phi"] == searched["first"]["phi"]
    card = load_model_card(out / "model_card.json")
    assert card["arch"] == arch and card["scaled"]["base_arch"] == BASE_ARCH
    assert "fine-tune" in card["accuracy"]["source"] and "compound-scaled" in card["scaled"]["accuracy_source"]
    assert card["space"]["hash"] == card["scaled"]["space_hash"] and card["training"]["finetune_epochs"] == 1
    assert card["latency"]["lut"] == str(env["lut"])
    assert read_onnx_metadata(out / "model.onnx")["hwnas.arch"] == arch
