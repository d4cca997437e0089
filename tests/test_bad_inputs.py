"""Table-driven bad input across every command: exit 2, exactly one `hwnas: error:` line, no traceback, and no output file
created or modified anywhere under the test's folder or the repo's committed tables.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # ofa_random: OFA files built by OFA's code

REPO = Path(__file__).resolve().parents[1]
TINY_LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3-tiny.csv"
MBV3_LUT = REPO / "latency_tables" / "cpu-ort-1t" / "mbv3.csv"
TINY_ARCH = "r32/k5e4,k3e6,k7e3/k3e3,k5e6/k7e4,k7e4,k3e3,k5e6/k3e6,k3e4/k5e3,k7e6,k3e4"
MBV3_ARCH = "r128/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3"
MARKER = "pwned.txt"


class _Evil:
    """A pickle that would create a file if it were ever unpickled with the unsafe loader."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {self.target}",))


def _copy_lut(src: Path, dest: Path) -> Path:
    """A copy of a committed table, its meta saying it was measured on this CPU: the committed tables come from whichever
    CPU the project's VM had that day, and their other-CPU warning (tested in test_latency_lut) would be a second line
    on stderr here, where each case must print exactly one."""
    from hwnas.machine import cpu_model, cpu_signature

    shutil.copy(src, dest)
    meta = json.loads(src.with_name(src.stem + ".meta.json").read_text())
    meta.update(cpu=cpu_model(), cpu_signature=cpu_signature())
    dest.with_name(dest.stem + ".meta.json").write_text(json.dumps(meta))
    return dest


def _lut_variant(folder: Path, name: str, *, csv_edit=None, meta_edit=None, drop_meta: bool = False) -> Path:
    path = _copy_lut(TINY_LUT, folder / f"{name}.csv")
    if csv_edit:
        path.write_text(csv_edit(path.read_text()))
    meta = path.with_name(path.stem + ".meta.json")
    if meta_edit:
        meta.write_text(json.dumps(meta_edit(json.loads(meta.read_text()))))
    if drop_meta:
        meta.unlink()
    return path


def _ofa_inputs(root: Path, *, mbv3_lut: Path) -> dict[str, Path]:
    """OFA files made by OFA's own classes (random weights), the ones import-ofa must refuse, and an imported run."""
    import torch
    from ofa.imagenet_classification.elastic_nn.networks.ofa_resnets import OFAResNets
    from ofa.nas.accuracy_predictor import AccuracyPredictor, MobileNetArchEncoder
    from ofa_random import ofa_predictor, ofa_supernet, save_released
    from PIL import Image

    folder = root / "ofa"
    folder.mkdir()
    out = {"ofa_ckpt": save_released(ofa_supernet(1.0, seed=0), folder / "ofa_mbv3_w1.0.pth")}
    blob = out["ofa_ckpt"].read_bytes()
    out["ofa_trunc"] = folder / "truncated.pth"
    out["ofa_trunc"].write_bytes(blob[: len(blob) // 2])
    out["ofa_resnet"] = folder / "ofa_resnet.pth"
    resnet = OFAResNets(depth_list=[0], expand_ratio_list=[0.2], width_mult_list=[0.65])
    torch.save({"state_dict": resnet.state_dict()}, out["ofa_resnet"])
    out["ofa_evil"] = folder / "evil.pth"
    with open(out["ofa_evil"], "wb") as fh:
        pickle.dump({"state_dict": _Evil(str(root / MARKER))}, fh)
    out["ofa_acc"] = folder / "acc.pth"
    torch.save(ofa_predictor(seed=0).state_dict(), out["ofa_acc"])
    out["ofa_acc_224"] = folder / "acc_224.pth"  # a predictor trained for one image size: another input layout
    torch.save(
        AccuracyPredictor(MobileNetArchEncoder(image_size_list=[224]), device="cpu").state_dict(), out["ofa_acc_224"]
    )
    out["ofa_run"] = root / "ofa_run"
    assert (
        main(["import-ofa", str(out["ofa_ckpt"]), "--out", str(out["ofa_run"]), "--predictor", str(out["ofa_acc"])])
        == 0
    )
    out["ofa_run_w12"] = root / "ofa_run_w12"  # only its config.json: search checks it against the LUT first
    out["ofa_run_w12"].mkdir()
    from hwnas.space import get_space, space_hash

    config = json.loads((out["ofa_run"] / "config.json").read_text())
    config.update(width=1.2, space_hash=space_hash(get_space("mbv3", width=1.2)))
    (out["ofa_run_w12"] / "config.json").write_text(json.dumps(config))
    out["tiny_imagenet"] = root / "tiny_imagenet"  # 3 classes: not the 1,000 outputs of an ImageNet supernet
    for split in ("train", "val"):
        for cls in ("n01", "n02", "n03"):
            (out["tiny_imagenet"] / split / cls).mkdir(parents=True)
            Image.new("RGB", (10, 8), (40, 90, 200)).save(out["tiny_imagenet"] / split / cls / "a.png")
    return out


def _replace_first_value(text: str, column: int, value: str) -> str:
    lines = text.splitlines()
    cells = lines[1].split(",")
    cells[column] = value
    lines[1] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    code = main(
        [
            "train",
            "--space",
            "mbv3-tiny",
            "--dataset",
            "fashion-mnist",
            "--out",
            str(run),
            "--max-steps",
            "2",
            "--batch-size",
            "8",
            "--no-progress",
        ]
    )
    assert code == 0
    luts = root / "luts"
    luts.mkdir()
    paths = {
        "root": root,
        "run": run,
        "lut": _copy_lut(TINY_LUT, luts / "good.csv"),
        "mbv3_lut": _copy_lut(MBV3_LUT, luts / "mbv3.csv"),
        "lut_trunc": _lut_variant(luts, "trunc", csv_edit=lambda t: t[: len(t) // 2]),
        "lut_cols": _lut_variant(luts, "cols", csv_edit=lambda t: t.replace("ms_p50", "mean", 1)),
        "lut_nan": _lut_variant(luts, "nan", csv_edit=lambda t: _replace_first_value(t, 1, "nan")),
        "lut_neg": _lut_variant(luts, "neg", csv_edit=lambda t: _replace_first_value(t, 1, "-0.5")),
        "lut_text": _lut_variant(luts, "text", csv_edit=lambda t: _replace_first_value(t, 2, "fast")),
        "lut_hash": _lut_variant(
            luts, "hash", meta_edit=lambda m: {**m, "space": {**m["space"], "hash": "0123456789ab"}}
        ),
        "lut_nometa": _lut_variant(luts, "nometa", drop_meta=True),
        "lut_badmeta": _lut_variant(luts, "badmeta", meta_edit=lambda m: [1, 2]),
        "empty_csv": root / "empty.csv",
    }
    paths["empty_csv"].write_text("")
    profiles = root / "profiles"
    profiles.mkdir()
    good_profile = (REPO / "profiles" / "cpu-ort-1t.yaml").read_text()
    (profiles / "unknown-key.yaml").write_text(good_profile + "\nturbo: true\n")
    (profiles / "wrong-type.yaml").write_text(good_profile.replace("threads: 1", "threads: two"))
    (profiles / "syntax.yaml").write_text("name: [unclosed\n")
    (profiles / "python-tag.yaml").write_text("name: !!python/object/apply:os.system ['touch pwned.txt']\n")
    for name in ("unknown-key", "wrong-type", "syntax", "python-tag"):
        paths[f"profile_{name}"] = profiles / f"{name}.yaml"
    # runs that must be refused: missing checkpoint, truncated checkpoint, a pickle that would run code
    for name in ("run_empty", "run_trunc", "run_evil"):
        (root / name).mkdir()
        paths[name] = root / name
    shutil.copy(run / "config.json", root / "run_trunc" / "config.json")
    blob = (run / "checkpoint.pt").read_bytes()
    (root / "run_trunc" / "checkpoint.pt").write_bytes(blob[: len(blob) // 3])
    shutil.copy(run / "config.json", root / "run_evil" / "config.json")
    with open(root / "run_evil" / "checkpoint.pt", "wb") as fh:
        pickle.dump({"model": _Evil(str(root / MARKER))}, fh)
    paths["bad_search"] = root / "bad_search.json"
    paths["bad_search"].write_text("{not json")
    paths["other_search"] = root / "other_search.json"
    paths["other_search"].write_text(json.dumps({"winner": {"arch": "r224/k3e3"}}))
    paths["existing_out"] = root / "existing_out"
    paths["existing_out"].mkdir()
    for name in ("model.onnx", "model_card.json", "manifest.json", "search.json"):
        (paths["existing_out"] / name).write_text("keep me")
    # search journals --resume must refuse: another search's, and one that is not a journal at all
    for name, text in (
        ("journal_other", json.dumps({"schema": "hwnas.search-journal/1", "search": {"seed": 99}}) + "\n"),
        ("journal_garbage", "not a journal\n"),
    ):
        paths[name] = root / name
        paths[name].mkdir()
        (paths[name] / "search.journal.jsonl").write_text(text)
    paths["file_not_dir"] = root / "a_file"
    paths["file_not_dir"].write_text("x")
    paths.update(_ofa_inputs(root, mbv3_lut=Path(paths["mbv3_lut"])))
    paths["fmnist_bad"] = root / "fmnist_bad"
    paths["fmnist_bad"].mkdir()
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        (paths["fmnist_bad"] / name).write_bytes(b"not gzip at all")
    return {k: str(v) for k, v in paths.items()}


CASES = [
    # space / arch
    ("space-unknown", ["space", "show", "--space", "resnet"]),
    ("arch-garbage", ["arch", "info", "garbage"]),
    ("arch-not-in-space", ["arch", "info", "r224/k3e3"]),
    ("arch-wrong-space", ["arch", "info", TINY_ARCH, "--space", "mbv3"]),
    ("arch-non-canonical", ["arch", "info", "R32/K5E4"]),
    ("width-negative", ["arch", "sample", "--width", "-1"]),
    ("width-text", ["arch", "sample", "--width", "wide"]),
    ("unknown-command", ["frobnicate"]),
    # profile
    ("profile-unknown-device", ["profile", "--device", "pixel99", "--space", "mbv3-tiny", "--out", "{root}/t1"]),
    (
        "profile-unknown-key",
        ["profile", "--device", "{profile_unknown-key}", "--space", "mbv3-tiny", "--out", "{root}/t2"],
    ),
    (
        "profile-wrong-type",
        ["profile", "--device", "{profile_wrong-type}", "--space", "mbv3-tiny", "--out", "{root}/t3"],
    ),
    ("profile-yaml-syntax", ["profile", "--device", "{profile_syntax}", "--space", "mbv3-tiny", "--out", "{root}/t4"]),
    (
        "profile-python-tag",
        ["profile", "--device", "{profile_python-tag}", "--space", "mbv3-tiny", "--out", "{root}/t5"],
    ),
    ("profile-unknown-space", ["profile", "--space", "resnet", "--out", "{root}/t6"]),
    ("profile-bad-resolution", ["profile", "--space", "mbv3-tiny", "--resolutions", "100", "--out", "{root}/t7"]),
    ("profile-import-missing", ["profile", "--import", "{root}/nope.csv", "--device", "phone", "--out", "{root}/t8"]),
    ("profile-import-empty", ["profile", "--import", "{empty_csv}", "--device", "phone", "--out", "{root}/t9"]),
    ("profile-out-is-file", ["profile", "--space", "mbv3-tiny", "--out", "{file_not_dir}"]),
    # latency predict / validate
    ("predict-missing-lut", ["latency", "predict", TINY_ARCH, "--lut", "{root}/missing.csv"]),
    ("predict-truncated-lut", ["latency", "predict", TINY_ARCH, "--lut", "{lut_trunc}"]),
    ("predict-wrong-columns", ["latency", "predict", TINY_ARCH, "--lut", "{lut_cols}"]),
    ("predict-nan-latency", ["latency", "predict", TINY_ARCH, "--lut", "{lut_nan}"]),
    ("predict-negative-latency", ["latency", "predict", TINY_ARCH, "--lut", "{lut_neg}"]),
    ("predict-text-latency", ["latency", "predict", TINY_ARCH, "--lut", "{lut_text}"]),
    ("predict-other-hash", ["latency", "predict", TINY_ARCH, "--lut", "{lut_hash}"]),
    ("predict-missing-meta", ["latency", "predict", TINY_ARCH, "--lut", "{lut_nometa}"]),
    ("predict-bad-meta", ["latency", "predict", TINY_ARCH, "--lut", "{lut_badmeta}"]),
    ("predict-arch-other-space", ["latency", "predict", TINY_ARCH, "--lut", "{mbv3_lut}"]),
    ("predict-malformed-arch", ["latency", "predict", "r32/k5e4,,k3e6", "--lut", "{lut}"]),
    ("validate-zero-subnets", ["latency", "validate", "--lut", "{lut}", "--subnets", "0"]),
    ("validate-text-subnets", ["latency", "validate", "--lut", "{lut}", "--subnets", "many"]),
    ("validate-bad-resolution", ["latency", "validate", "--lut", "{lut}", "--resolution", "999", "--subnets", "2"]),
    # bundle
    ("bundle-existing-out", ["bundle", "--space", "mbv3-tiny", "--out", "{existing_out}"]),
    ("bundle-unknown-device", ["bundle", "--device", "pixel99", "--space", "mbv3-tiny", "--out", "{root}/b1"]),
    # train
    ("train-unknown-dataset", ["train", "--dataset", "imagenet", "--out", "{root}/r1"]),
    (
        "train-missing-data-dir",
        ["train", "--dataset", "fashion-mnist", "--data-dir", "{root}/nowhere", "--out", "{root}/r2"],
    ),
    ("train-corrupt-data", ["train", "--dataset", "fashion-mnist", "--data-dir", "{fmnist_bad}", "--out", "{root}/r3"]),
    ("train-unknown-mode", ["train", "--dataset", "synthetic", "--mode", "magic", "--out", "{root}/r4"]),
    ("train-negative-epochs", ["train", "--dataset", "synthetic", "--epochs", "-1", "--out", "{root}/r5"]),
    ("train-existing-run", ["train", "--dataset", "synthetic", "--out", "{run}", "--max-steps", "1"]),
    ("train-resume-nothing", ["train", "--dataset", "synthetic", "--out", "{run_empty}", "--resume"]),
    ("train-resume-truncated", ["train", "--dataset", "synthetic", "--out", "{run_trunc}", "--resume"]),
    # search
    ("search-missing-run", ["search", "--run", "{root}/norun", "--lut", "{lut}", "--budget-ms", "1"]),
    ("search-truncated-ckpt", ["search", "--run", "{run_trunc}", "--lut", "{lut}", "--budget-ms", "1"]),
    ("search-malicious-ckpt", ["search", "--run", "{run_evil}", "--lut", "{lut}", "--budget-ms", "1"]),
    ("search-negative-budget", ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "-1"]),
    ("search-zero-budget", ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "0"]),
    ("search-text-budget", ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "fast"]),
    (
        "search-infeasible-budget",
        ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "0.001", "--out", "{root}/s1"],
    ),
    (
        "search-lut-other-space",
        ["search", "--run", "{run}", "--lut", "{mbv3_lut}", "--budget-ms", "5", "--out", "{root}/s2"],
    ),
    ("search-bad-lut", ["search", "--run", "{run}", "--lut", "{lut_nan}", "--budget-ms", "1", "--out", "{root}/s3"]),
    (
        "search-existing-out",
        ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "5", "--out", "{existing_out}"],
    ),
    (
        "search-resume-no-journal",
        ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "5", "--out", "{root}/s4", "--resume"],
    ),
    (
        "search-resume-other-journal",
        ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "5", "--out", "{journal_other}", "--resume"],
    ),
    (
        "search-resume-garbage-journal",
        ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "5", "--out", "{journal_garbage}", "--resume"],
    ),
    (
        "search-journal-without-resume",
        ["search", "--run", "{run}", "--lut", "{lut}", "--budget-ms", "5", "--out", "{journal_other}"],
    ),
    (
        "search-resume-scale",
        [
            "search",
            "--run",
            "{run}",
            "--lut",
            "{lut}",
            "--budget-ms",
            "5",
            "--strategy",
            "scale",
            "--arch",
            TINY_ARCH,
            "--out",
            "{root}/s5",
            "--resume",
        ],
    ),
    # export
    ("export-garbage-arch", ["export", "--run", "{run}", "--arch", "garbage", "--out", "{root}/e1"]),
    ("export-arch-not-in-space", ["export", "--run", "{run}", "--arch", "r224/k3e3", "--out", "{root}/e2"]),
    ("export-missing-run", ["export", "--run", "{root}/norun", "--arch", TINY_ARCH, "--out", "{root}/e3"]),
    ("export-malicious-ckpt", ["export", "--run", "{run_evil}", "--arch", TINY_ARCH, "--out", "{root}/e4"]),
    ("export-missing-search", ["export", "--run", "{run}", "--search", "{root}/none.json", "--out", "{root}/e5"]),
    ("export-bad-search-json", ["export", "--run", "{run}", "--search", "{bad_search}", "--out", "{root}/e6"]),
    ("export-search-other-space", ["export", "--run", "{run}", "--search", "{other_search}", "--out", "{root}/e7"]),
    ("export-existing-out", ["export", "--run", "{run}", "--arch", TINY_ARCH, "--out", "{existing_out}"]),
    (
        "export-unknown-target",
        ["export", "--run", "{run}", "--arch", TINY_ARCH, "--target", "pixel99", "--out", "{root}/e8"],
    ),
    (  # --device is the torch device; a profile name there points to --target
        "export-profile-as-device",
        ["export", "--run", "{run}", "--arch", TINY_ARCH, "--device", "cpu-ort-1t", "--out", "{root}/e8b"],
    ),
    (
        "export-kd-weight-above-1",
        ["export", "--run", "{run}", "--arch", TINY_ARCH, "--kd-weight", "1.5", "--out", "{root}/e10"],
    ),
    (
        "export-negative-finetune-lr",
        ["export", "--run", "{run}", "--arch", TINY_ARCH, "--finetune-lr", "-0.1", "--out", "{root}/e11"],
    ),
    (
        "export-arch-and-search",
        ["export", "--run", "{run}", "--arch", TINY_ARCH, "--search", "{bad_search}", "--out", "{root}/e9"],
    ),
    # report
    ("report-missing-run", ["report", "{root}/norun"]),
    # import-ofa and imported runs
    ("import-missing-file", ["import-ofa", "{root}/nope.pth", "--out", "{root}/i1"]),
    ("import-truncated", ["import-ofa", "{ofa_trunc}", "--out", "{root}/i2"]),
    ("import-ofa-resnet", ["import-ofa", "{ofa_resnet}", "--out", "{root}/i3"]),
    ("import-width-mismatch", ["import-ofa", "{ofa_ckpt}", "--width", "1.2", "--out", "{root}/i4"]),
    ("import-width-unpublished", ["import-ofa", "{ofa_ckpt}", "--width", "0.75", "--out", "{root}/i5"]),
    (
        "import-predictor-other-space",
        ["import-ofa", "{ofa_ckpt}", "--predictor", "{ofa_acc_224}", "--out", "{root}/i6"],
    ),
    (
        "import-predictor-not-a-predictor",
        ["import-ofa", "{ofa_ckpt}", "--predictor", "{ofa_ckpt}", "--out", "{root}/i7"],
    ),
    ("import-malicious-pickle", ["import-ofa", "{ofa_evil}", "--out", "{root}/i8"]),
    ("import-malicious-predictor", ["import-ofa", "{ofa_ckpt}", "--predictor", "{ofa_evil}", "--out", "{root}/i9"]),
    ("import-existing-run", ["import-ofa", "{ofa_ckpt}", "--out", "{ofa_run}"]),
    (
        "search-imported-measured-no-data",
        [
            "search",
            "--run",
            "{ofa_run}",
            "--lut",
            "{mbv3_lut}",
            "--budget-ms",
            "2",
            "--scorer",
            "measured",
            "--out",
            "{root}/s6",
        ],
    ),
    (
        "search-imported-class-mismatch",
        [
            "search",
            "--run",
            "{ofa_run}",
            "--lut",
            "{mbv3_lut}",
            "--budget-ms",
            "2",
            "--scorer",
            "measured",
            "--data-dir",
            "{tiny_imagenet}",
            "--out",
            "{root}/s7",
        ],
    ),
    (
        "search-run-without-predictor",
        [
            "search",
            "--run",
            "{run}",
            "--lut",
            "{lut}",
            "--budget-ms",
            "5",
            "--scorer",
            "predictor",
            "--out",
            "{root}/s8",
        ],
    ),
    (
        "search-predictor-resume",
        [
            "search",
            "--run",
            "{ofa_run}",
            "--lut",
            "{mbv3_lut}",
            "--budget-ms",
            "2",
            "--resume",
            "--out",
            "{journal_other}",
        ],
    ),
    (
        "search-lut-of-other-width",
        ["search", "--run", "{ofa_run_w12}", "--lut", "{mbv3_lut}", "--budget-ms", "2", "--out", "{root}/s9"],
    ),
    ("train-resume-imported", ["train", "--dataset", "synthetic", "--out", "{ofa_run}", "--resume"]),
    ("export-imported-no-data", ["export", "--run", "{ofa_run}", "--arch", MBV3_ARCH, "--out", "{root}/e12"]),
]


def _snapshot(*folders: str) -> dict[str, tuple[int, int]]:
    state = {}
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                state[path] = (st.st_size, st.st_mtime_ns)
            state[dirpath] = (0, 0)
    return state


@pytest.mark.parametrize("name,argv", CASES, ids=[c[0] for c in CASES])
def test_bad_input(env, capsys, name, argv):
    args = [a.format(**env) for a in argv]
    before = _snapshot(env["root"], str(REPO / "latency_tables"))
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"{name}: exit {code}, stderr {err!r}"
    assert len(lines) == 1 and lines[0].startswith("hwnas: error: "), f"{name}: {err!r}"
    assert "Traceback" not in err
    after = _snapshot(env["root"], str(REPO / "latency_tables"))
    assert after == before, f"{name}: files changed: {sorted(set(after.items()) ^ set(before.items()))[:4]}"
    assert not (Path(env["root"]) / MARKER).exists() and not Path(MARKER).exists()


def test_case_table_is_big_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    "argv", [["arch", "info", "garbage"], ["search", "--run", "/nonexistent", "--lut", "x.csv", "--budget-ms", "1"]]
)
def test_bad_input_as_a_real_process(argv):
    """The same contract through the console entry point: one line on stderr, exit 2, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "hwnas", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("hwnas: error: ")


@pytest.mark.parametrize("fails", [True, False])
def test_library_warnings_add_no_lines(monkeypatch, capsys, fails):
    """A Python warning raised inside a command (a library deprecation, say) never adds a line to stderr: an error stays
    one line, a success prints only its own output; `-v` shows the warning in the debug log."""
    import warnings

    import hwnas.cli.cmd_report as cmd_report
    from hwnas.errors import HwnasError

    def noisy(args):
        warnings.warn("torch.jit.script is deprecated", FutureWarning, stacklevel=2)
        if fails:
            raise HwnasError("run folder x not found")
        print("wrote x/pareto.png")
        return 0

    monkeypatch.setattr(cmd_report, "_report", noisy)
    code = main(["report", "x"])
    captured = capsys.readouterr()
    assert code == (2 if fails else 0)
    assert captured.err.splitlines() == (["hwnas: error: run folder x not found"] if fails else [])
    assert captured.out.splitlines() == ([] if fails else ["wrote x/pareto.png"])
    assert main(["-v", "report", "x"]) == code
    assert "library warning: FutureWarning: torch.jit.script is deprecated" in capsys.readouterr().err
