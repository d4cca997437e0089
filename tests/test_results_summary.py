"""`bench/run_all.py --summarize` (bench/summarize.py): summary.json and docs/results.md from named result files."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import summarize  # noqa: E402

from hwnas.space import get_space, largest  # noqa: E402

RESULTS = REPO / "bench" / "results"
HEADLINE = (
    "lut_within_10pct",
    "lut_kendall_tau",
    "lut_drift_corrected",
    "lut_build_s",
    "train_speedup_vs_ofa",
    "search_speedup_vs_ofa",
    "pareto_wins",
    "pareto_budgets",
    "search_quality_evolution_wins_val",
    "onnx_max_abs_diff_worst",
    "int8_speedup_mbv3_largest_224",
    "int8_acc_drop_pp_worst",
    "ofa_specialize_speedup_vs_ofa",
    "ofa_specialize_all_within_budget",
)


def _read(name: str, folder: Path = RESULTS) -> dict:
    return json.loads((folder / name).read_text())


def _machine_records(data: object) -> list[dict]:
    if isinstance(data, dict):
        own = [data["machine"]] if isinstance(data.get("machine"), dict) else []
        return own + [m for v in data.values() for m in _machine_records(v)]
    if isinstance(data, list):
        return [m for v in data for m in _machine_records(v)]
    return []


@pytest.fixture
def results_copy(tmp_path: Path) -> Path:
    """The committed result files in a folder a test may change."""
    out = tmp_path / "results"
    out.mkdir()
    for path in RESULTS.glob("*.json"):
        if path.name != "summary.json":
            shutil.copy(path, out / path.name)
    return out


def test_committed_results_give_every_headline_key_with_its_provenance() -> None:
    summary = summarize.summarize(RESULTS)
    for key in HEADLINE:
        assert summary[key] is not None, summary["reasons"].get(key)
        prov = summary["provenance"][key]
        assert (REPO / prov["file"]).is_file()
        assert prov["machine"] and prov["date"], key  # every committed file records its machine and date
    assert summary["pareto_wins"] == _read("baselines.json")["pareto_wins"]
    assert summary["ofa_specialize_speedup_vs_ofa"] == _read("ofa_specialize.json")["speedup_min"]
    assert summary["lut_kendall_tau"] == _read("lut_fidelity.json")["pooled"]["224"]["lut_calibrated"]["kendall_tau"]
    assert "machine" not in summary  # the summary depends on the result files only, not on where it was made
    assert summary["sources"] == sorted(p.name for p in RESULTS.glob("*.json") if p.name != "summary.json")


def test_committed_summary_and_results_page_are_up_to_date() -> None:
    entries = summarize.collect(RESULTS)
    hint = "stale: run 'python bench/run_all.py --summarize'"
    assert _read("summary.json") == summarize.summarize(RESULTS, entries), f"bench/results/summary.json {hint}"
    assert summarize.RESULTS_MD.read_text() == summarize.render_markdown(entries, RESULTS), f"docs/results.md {hint}"


def test_named_entry_not_the_max_over_runs(results_copy: Path) -> None:
    speed = _read("search_speed.json", results_copy)
    named = next(r for r in speed["results"] if r["predictor"].startswith("MLP 64x64"))
    other = next(r for r in speed["results"] if r["predictor"].startswith("MLP 400x400x400"))
    named["speedup"], other["speedup"] = 2.0, 50.0
    (results_copy / "search_speed.json").write_text(json.dumps(speed))
    summary = summarize.summarize(results_copy)
    assert summary["search_speedup_vs_ofa"] == 2.0
    assert summary["search_speedup_vs_ofa_mlp_400x3"] == 50.0


def test_worst_keys_take_the_worst_of_one_file(results_copy: Path) -> None:
    export = _read("export.json", results_copy)
    diffs = [e["max_abs_diff"] for e in export["trained"]["exports"]]
    drops = [100 * (e["test_acc"] - e["int8"]["test_acc"]) for e in export["trained"]["exports"]]
    summary = summarize.summarize(results_copy)
    assert summary["onnx_max_abs_diff_worst"] == max(diffs)
    assert summary["int8_acc_drop_pp_worst"] == pytest.approx(max(drops), abs=1e-3)
    largest_224 = str(largest(get_space("mbv3"), resolution=224))
    row = next(r for r in export["speed"] if r["space"] == "mbv3" and r["arch"] == largest_224)
    assert summary["int8_speedup_mbv3_largest_224"] == row["int8_speedup"]


def test_missing_baselines_leave_pareto_keys_null_with_the_reason(results_copy: Path) -> None:
    (results_copy / "baselines.json").unlink()
    summary = summarize.summarize(results_copy)
    for key in ("pareto_wins", "pareto_budgets", "pareto_margins_pp", "supernet_train_minutes"):
        assert summary[key] is None
        assert key in summary["missing"]
        assert summary["reasons"][key] == "bench/results/baselines.json missing"
    # the evolution-vs-random comparison is its own key and does not stand in for pareto_wins
    assert (
        summary["search_quality_evolution_wins_val"]
        == summarize.summarize(RESULTS)["search_quality_evolution_wins_val"]
    )
    assert summary["lut_kendall_tau"] is not None and "lut_kendall_tau" not in summary["reasons"]
    assert "baselines.json" not in summary["sources"]


def test_quick_and_unreadable_files_are_refused_with_the_reason(results_copy: Path) -> None:
    baselines = _read("baselines.json", results_copy)
    baselines["quick"] = True
    (results_copy / "baselines.json").write_text(json.dumps(baselines))
    (results_copy / "export.json").write_text('{"benchmark": "export", ')  # a torn write
    summary = summarize.summarize(results_copy)
    assert summary["pareto_wins"] is None and "--quick smoke run" in summary["reasons"]["pareto_wins"]
    assert summary["onnx_max_abs_diff_worst"] is None
    assert summary["reasons"]["onnx_max_abs_diff_worst"].startswith("bench/results/export.json unreadable")


def test_absent_field_names_the_field_and_file(results_copy: Path) -> None:
    specialize = _read("ofa_specialize.json", results_copy)
    del specialize["speedup_min"]
    (results_copy / "ofa_specialize.json").write_text(json.dumps(specialize))
    summary = summarize.summarize(results_copy)
    assert summary["ofa_specialize_speedup_vs_ofa"] is None
    assert (
        summary["reasons"]["ofa_specialize_speedup_vs_ofa"]
        == "speedup_min not found in bench/results/ofa_specialize.json"
    )
    assert summary["ofa_specialize_all_within_budget"] is True


def test_write_summary_writes_both_files_with_missing_keys_explained(results_copy: Path, tmp_path: Path) -> None:
    (results_copy / "nas_modes.json").unlink()
    docs = tmp_path / "docs" / "results.md"
    summary = summarize.write_summary(results_copy, docs=docs)
    assert _read("summary.json", results_copy) == summary
    text = docs.read_text()
    assert text.startswith("# Results\n\nGenerated by `python bench/run_all.py --summarize`")
    assert "| `nas_targets` | bench/results/nas_modes.json missing |" in text
    # every number row names its file, machine and date
    rows = [line for line in text.splitlines() if line.startswith("| `lut_within_10pct`")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == f"{summary['lut_within_10pct']:.4g}"
    assert "lut_fidelity.json" in cells[2] and "pooled.224.lut_calibrated.within_10pct" in cells[2]
    machines = _machine_records(_read("lut_fidelity.json", results_copy))
    assert any(
        cells[3].startswith(m["cpu"]) and cells[4] == f"{m['date'][:10]} {m['date'][11:16]} UTC" for m in machines
    )
    sections = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert sections[:2] == ["Latency tables", "Latency tables: other recorded runs"]
    assert {"Export", "OFA specialization", "Missing", "Result files"} <= set(sections)
