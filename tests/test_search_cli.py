"""`hwnas search` / `hwnas report` command line: budget errors answer fast, outputs and --json follow the contract."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from search_lut import write_table
from search_run import write_untrained_run

from hwnas.cli.main import main
from hwnas.search import gene_latency_from_lut
from hwnas.space import get_space

SPACE = get_space("mbv3-tiny")


@pytest.fixture(scope="module")
def lut(tmp_path_factory) -> Path:
    return write_table(SPACE, tmp_path_factory.mktemp("lut") / "mbv3-tiny.csv")


def test_infeasible_budget_is_a_fast_one_line_error(lut: Path, tmp_path: Path, capsys) -> None:
    from hwnas.latency.lut import load_lut

    min_ms = gene_latency_from_lut(load_lut(lut), SPACE).min_ms()[0]
    t0 = time.perf_counter()
    code = main(["search", "--run", str(tmp_path), "--lut", str(lut), "--budget-ms", f"{min_ms * 0.5:.6f}"])
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - t0 < 5.0
    assert err.startswith("hwnas: error: budget") and f"{min_ms:.4f} ms" in err and err.count("\n") == 1
    assert not (tmp_path / "search.json").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget-ms", "1"], "not found"),  # run folder missing
        ([], "give a latency budget"),
        (["--budget-ms", "-3"], "positive"),
        (["--budgets", "1,x"], "comma-separated"),
    ],
)
def test_bad_search_arguments(lut: Path, tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    run = tmp_path / "nope" if message == "not found" else tmp_path
    code = main(["search", "--run", str(run), "--lut", str(lut), *argv])
    assert code == 2 and message in capsys.readouterr().err


def test_report_without_search_results_explains(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "hwnas search" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return write_untrained_run(SPACE, tmp_path_factory.mktemp("run"))


def test_search_json_contract_and_outputs(tiny_run: Path, lut: Path, capsys) -> None:
    import json

    from hwnas.latency.lut import load_lut

    lat = gene_latency_from_lut(load_lut(lut), SPACE)
    lo, hi = lat.min_ms()[0], lat.max_ms()[0]
    budgets = [round(lo + 0.02 * (hi - lo), 5), round(lo + 0.05 * (hi - lo), 5)]
    argv = [
        "search",
        "--run",
        str(tiny_run),
        "--lut",
        str(lut),
        "--budget-ms",
        str(budgets[0]),
        "--evaluations",
        "3",
        "--population",
        "2",
        "--val-images",
        "16",
        "--calib-images",
        "32",
        "--seed",
        "3",
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    keys = {"arch", "predicted_ms", "accuracy", "budget_ms", "evaluated", "seconds", "scorer", "torch_device"}
    assert set(out) == keys | {"world_size"}
    import torch

    assert out["torch_device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # the default device
    assert out["world_size"] == 1
    assert out["predicted_ms"] <= budgets[0] and out["evaluated"] == 3 and 0 <= out["accuracy"] <= 1
    assert out["scorer"] == "measured"  # a trained run has no imported predictor
    for name in ("search.json", "pareto.csv", "candidates.csv"):
        assert (tiny_run / name).is_file()
    assert main(argv) == 2 and "--force" in capsys.readouterr().err  # never overwrites silently
    multi = [
        "search",
        "--run",
        str(tiny_run),
        "--lut",
        str(lut),
        "--budgets",
        ",".join(map(str, budgets)),
        "--strategy",
        "random",
        "--evaluations",
        "2",
        "--val-images",
        "16",
        "--calib-images",
        "32",
        "--force",
        "--json",
    ]
    assert main(multi) == 0
    both = json.loads(capsys.readouterr().out)
    assert [b["budget_ms"] for b in both] == budgets and all(b["predicted_ms"] <= b["budget_ms"] for b in both)
    saved = json.loads((tiny_run / "search.json").read_text())
    assert saved["extra"]["cache"]["hits"] >= 0 and len(saved["budgets"]) == 2
    assert main(["report", str(tiny_run)]) == 0 and (tiny_run / "pareto.png").is_file()


@pytest.mark.parametrize("command", ["search", "export"])
def test_threads_flag_sets_torch_threads(lut: Path, tmp_path: Path, command: str) -> None:
    """`--threads N` replaces the fixed thread caps: torch runs N threads from the start of the command."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        if command == "search":
            argv = ["search", "--run", str(tmp_path), "--lut", str(lut), "--budget-ms", "0.000001", "--threads", "1"]
        else:
            argv = [
                "export",
                "--run",
                str(tmp_path / "none"),
                "--arch",
                "r32/k3e3",
                "--out",
                str(tmp_path / "e"),
                "--threads",
                "1",
            ]
        assert main(argv) == 2  # both stop at a bad input, after the flag has taken effect
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
