"""`hwnas quickstart` plumbing that runs in milliseconds: LUT reuse decision and output-directory safety."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.cli.main import main
from hwnas.errors import HwnasError
from hwnas.latency import load_profile
from hwnas.machine import cpu_model, cpu_signature, package_versions
from hwnas.quickstart import QuickstartConfig, lut_matches_machine
from hwnas.space import GRAPH_REVISION, get_space, space_hash


def _meta(**over: object) -> dict[str, object]:
    space = get_space("mbv3-tiny")
    meta: dict[str, object] = {
        "space": {"name": space.name, "hash": space_hash(space), "block_graph_revision": GRAPH_REVISION},
        "profile": load_profile("cpu-ort-1t").to_dict(),
        "cpu": cpu_model(),
        "versions": package_versions(),
    }
    meta.update(over)
    return meta


def test_committed_lut_is_reused_only_on_the_same_machine_profile_and_space() -> None:
    space, profile = get_space("mbv3-tiny"), load_profile("cpu-ort-1t")
    assert lut_matches_machine(_meta(), space=space, profile=profile)[0]
    ok, why = lut_matches_machine(_meta(cpu="Some Other CPU"), space=space, profile=profile)
    assert not ok and "cpu" in why
    ok, why = lut_matches_machine(_meta(profile={**profile.to_dict(), "threads": 2}), space=space, profile=profile)
    assert not ok and "profile" in why
    ok, why = lut_matches_machine(_meta(), space=get_space("mbv3"), profile=profile)
    assert not ok and "space" in why
    ok, why = lut_matches_machine(_meta(versions={"onnxruntime": "0.0.1"}), space=space, profile=profile)
    assert not ok and "onnxruntime" in why
    # blocks timed when they exported to other operators (tables from before the revision was recorded count as 1)
    ok, why = lut_matches_machine(
        _meta(space={"name": space.name, "hash": space_hash(space)}), space=space, profile=profile
    )
    assert not ok and "block graph revision" in why and f"(1 vs {GRAPH_REVISION})" in why
    # same marketing name, another CPU generation: the signature tells them apart; tables without one match by name
    assert lut_matches_machine(_meta(cpu_signature=cpu_signature()), space=space, profile=profile)[0]
    ok, why = lut_matches_machine(
        _meta(cpu_signature="AuthenticAMD family 23 model 49 [avx2]"), space=space, profile=profile
    )
    assert not ok and "cpu signature" in why and "family 23" in why


def test_quickstart_refuses_to_overwrite_and_bad_config(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "search.json").write_text("{}")
    assert main(["quickstart", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["quickstart", "--out", str(tmp_path), "--steps", "0"]) == 2
    assert "positive" in capsys.readouterr().err
    with pytest.raises(HwnasError):
        QuickstartConfig(budget_fraction=1.5)


def test_cores_in_use_reads_a_real_share_of_the_cores():
    import os

    from hwnas.machine import cores_in_use
    from hwnas.quickstart import _threads

    used = cores_in_use(0.2)
    if os.path.exists("/proc/stat"):
        assert used is not None and 0.0 <= used <= (os.cpu_count() or 1)
    assert _threads() in (1, 2)


def test_ensure_lut_reuses_a_table_it_profiled_earlier_when_asked(tmp_path: Path) -> None:
    from hwnas.latency.harness import TimingStats
    from hwnas.latency.lut import LatencyTable, lut_path, save_lut
    from hwnas.quickstart import ensure_lut

    space, profile = get_space("mbv3-tiny"), load_profile("cpu-ort-1t")
    earlier = lut_path(tmp_path / "tables", profile.name, space)
    earlier.parent.mkdir(parents=True)
    save_lut(
        LatencyTable(
            {"8x8x16:ir_k3_e3_c24_s2_re": TimingStats(0.01, 0.011, 0.01, 50)}, {**_meta(), "device": profile.name}
        ),
        earlier,
    )
    stamp = earlier.stat().st_mtime_ns
    path, committed = ensure_lut(
        space,
        profile,
        committed_dir=tmp_path / "none",
        out_dir=tmp_path / "tables",
        progress=False,
        reuse_profiled=True,
    )
    assert (path, committed) == (earlier, False) and earlier.stat().st_mtime_ns == stamp  # not profiled again
