"""The command line as a user meets it: `ablate flops`, `ablate validate`, and one-line errors.

In process (typer's CliRunner, through the same one-line error handling as `ablate.cli.main`); a few runs of
the real entry point (`python -m ablate`, a subprocess) check that it says the same. The slow tests count
networks in subprocesses (a fresh process shows whether torch was imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from conftest import STUDIES, run_cli
from typer.testing import CliRunner

from ablate.cli import app

GOOD = "name: x\nmodel: {preset: convnext_atto}\ndata: {dataset: synthetic, image_size: 32}\n"

# (file content, expected "<field path>: " fragment, expected words in the problem)
MALFORMED = {
    "bad_yaml": ("name: x\nmodel: {preset: resnet50\n", "line 3, column 1", "invalid YAML"),
    "empty": ("", None, "empty"),
    "not_a_mapping": ("- a\n- b\n", None, "mapping"),
    "duplicate_key": ("name: x\nname: y\n", "name", "twice"),
    "unknown_key": ("name: x\nmodle: {preset: resnet50}\n", "modle", "did you mean 'model'"),
    "wrong_type": ("name: x\nseeds: 3\n", "seeds", "valid list"),
    "out_of_range": ("name: x\nrecipe: {epochs: -1}\n", "recipe.epochs", "greater than 0"),
    "unknown_preset": ("name: x\nmodel: {preset: resnet51}\n", "model.preset", "did you mean 'resnet50'"),
    "unknown_timm": ("name: x\nmodel: {timm: convnext_tinny}\n", "model.timm", "did you mean 'convnext_tiny'"),
    "unknown_dataset": ("name: x\ndata: {dataset: fashionmnist}\n", "data.dataset", "did you mean 'fashion-mnist'"),
    "unknown_activation": ("name: x\nmodel: {preset: resnet50, activation: gleu}\n", "model.activation",
                           "did you mean 'gelu'"),
    "unknown_norm": ("name: x\nsteps:\n - {name: a, set: {norm: batchnorm}}\n", "steps[0].set.norm",
                     "did you mean 'batch'"),
    "unknown_set_field": ("name: x\nsteps:\n - {name: a, set: {kernel_sise: 5}}\n", "steps[0].set.kernel_sise",
                          "did you mean 'kernel_size'"),
    "even_kernel": ("name: x\nmodel: {preset: resnet50, kernel_size: 4}\n", "model.kernel_size", "odd"),
    "groups_not_dividing": ("name: x\nvariants:\n - {name: a, set: {groups: 5}}\n", "variants[0].set.groups",
                            "does not divide"),
    "duplicate_names": ("name: x\nvariants:\n - {name: a}\n - {name: a, set: {kernel_size: 5}}\n",
                        "variants[1].name", "duplicate"),
    "missing_extends": ("name: x\nextends: nothere.yaml\n", "extends", "not found"),
    "empty_grid_axis": ("name: x\ngrid: {kernel_size: []}\n", "grid.kernel_size", "empty"),
    "bad_name": ("name: 'my study/1'\n", "name", "pattern"),
    "two_lists": ("name: x\nsteps: [{name: a}]\ngrid: {kernel_size: [3]}\n", "grid", "one of steps"),
    "timm_with_fields": ("name: x\nmodel: {timm: resnet18, kernel_size: 5}\n", "model.kernel_size", "timm"),
    "image_too_small": ("name: x\nmodel: {preset: convnext_atto}\ndata: {image_size: 16}\n", "data.image_size",
                        "too small"),
    "bad_scale": ("name: x\nmodel: {preset: resnext50_32x4d}\nscale: {width: 0.01}\n", "scale", "groups"),
}


def listing(*dirs: Path) -> set[str]:
    return {str(p) for d in dirs if d.exists() for p in d.rglob("*")}


def invoke(*args: str) -> Result:
    """`ablate ARGS` in this process as a user meets it: typer's CliRunner through the app's one-line error
    handling (what `ablate.cli.main` does), stdout and stderr apart."""
    return CliRunner().invoke(app, list(args), one_line_errors=True)


def assert_one_line_error(code: int, out: str, err: str, study: Path, path: str | None, words: str) -> None:
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith(f"{study}: ")
    if path:
        assert lines[0].startswith(f"{study}: {path}: "), lines[0]
    assert words in lines[0], lines[0]


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_study_is_one_line_exit_2_and_writes_nothing(case: str, tmp_path: Path, empty_cache: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    text, path, words = MALFORMED[case]
    study = tmp_path / "study.yaml"
    study.write_text(text)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    for command in ("flops", "validate"):
        r = invoke(command, str(study))
        assert isinstance(r.exception, SystemExit), r.exc_info  # an exit, not an exception escaping the command
        assert_one_line_error(r.exit_code, r.stdout, r.stderr, study, path, words)
    assert listing(tmp_path) == before  # nothing written next to the study ...
    assert not empty_cache.exists() or not any(empty_cache.rglob("*.json"))  # ... nor in the cache


@pytest.mark.parametrize("case", ["bad_yaml", "unknown_set_field"])
def test_the_real_entry_point_says_the_same(case: str, tmp_path: Path, empty_cache: Path) -> None:
    """`python -m ablate` (a subprocess: the installed entry point, exit code and stderr exactly as a user sees
    them) gives the same one line and exit code as the in-process runs above."""
    text, path, words = MALFORMED[case]
    study = tmp_path / "study.yaml"
    study.write_text(text)
    before = listing(tmp_path)
    r = run_cli("flops", str(study), cwd=tmp_path)
    assert_one_line_error(r.returncode, r.stdout, r.stderr, study, path, words)
    assert "Traceback" not in r.stderr
    assert r.stderr == invoke("flops", str(study)).stderr
    assert listing(tmp_path) == before


def test_missing_file_and_bad_set() -> None:
    r = run_cli("flops", "no/such/study.yaml")  # the real entry point
    assert r.returncode == 2 and r.stderr.strip() == "no/such/study.yaml: no such file"
    r = invoke("validate", str(STUDIES / "roadmap.yaml"), "--set", "recipe.epochs=abc")
    assert r.exit_code == 2 and "recipe.epochs" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_validate_prints_a_summary() -> None:
    r = invoke("validate", str(STUDIES / "roadmap.yaml"), "--no-data")  # ImageNet is not on a test machine
    assert r.exit_code == 0, r.stderr
    assert "17 variants (steps)" in r.stdout and len(r.stdout.strip().splitlines()) == 1


def test_usage_errors_are_one_line() -> None:
    r = invoke("validate")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "Missing argument 'study'" in r.stderr
    r = invoke("nosuch")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "No such command 'nosuch'" in r.stderr
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.startswith("ablate ")


@pytest.mark.slow
def test_roadmap_flops_match_the_paper(empty_cache: Path) -> None:
    r = run_cli("flops", str(STUDIES / "roadmap.yaml"), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr and "TorchScript" not in r.stderr  # fvcore's chatter stays hidden
    rows = json.loads(r.stdout)
    assert len(rows) == 17
    assert rows[0]["params"] == 25_557_032  # timm resnet50
    assert rows[-1]["params"] == 28_589_128  # timm convnext_tiny
    for row in rows:
        assert set(row) >= {"name", "group", "id", "params", "gflops", "gflops_fvcore", "gflops_train", "vs_paper"}
        assert sum(row["breakdown"].values()) == pytest.approx(row["gflops_fvcore"], abs=1e-3)
    # the headline (conv + linear) rounds to Table 10 at 15 of 17 steps; the two others say why
    off = [i for i, row in enumerate(rows) if abs(row["gflops"] - row["ref_gflops"]) > 0.005]
    assert off == [15, 16] and [i for i, row in enumerate(rows) if row["vs_paper"]] == off
    assert rows[15]["ref_gflops"] == 4.46 and rows[15]["ref_gflops_corrected"] == 4.15  # printed, and corrected
    assert "misprint" in rows[15]["vs_paper"] and "4.455 vs printed 4.49" in rows[16]["vs_paper"]
    # faithful at scale: global batch 4096 in the modern-recipe steps, no stem norm from the patchify stem to
    # separate downsampling, which brings it
    assert all(row["recipe"]["batch_size"] == 4096 for row in rows if row["recipe"]["preset"] == "modern")
    assert [row["net"]["stem_norm"] for row in rows] == [True] * 3 + [False] * 13 + [True]
    # a second call answers from the cache: same numbers, and torch is not even imported
    probe = ("import sys, atexit; atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); "
             "sys.argv = ['ablate', 'flops', sys.argv[1], '--format', 'json']; from ablate.cli import main; main()")
    r2 = subprocess.run([sys.executable, "-c", probe, str(STUDIES / "roadmap.yaml")], capture_output=True,
                        text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout) == rows
    assert r2.stderr.strip().splitlines()[-1] == "False"


@pytest.mark.slow
def test_flops_table_csv_and_breakdown(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text("name: x\nmodel: {preset: convnext_atto}\ndata: {dataset: fashion-mnist, image_size: 32}\n"
                     "scale: {width: 0.5}\n"
                     "variants:\n - {name: a}\n - {name: b, set: {kernel_size: 3}, reference: {gflops: 0.5}}\n")
    r = run_cli("flops", str(study), "--breakdown")
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0].split()
    assert header[:8] == ["name", "group", "id", "params", "gflops", "gflops_fvcore", "gflops_train", "ref_gflops"]
    assert {"gflops_stem", "gflops_stage1", "gflops_stage4", "gflops_head"} <= set(header)
    r = run_cli("flops", str(study), "--format", "csv")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("name,group,id,kind,params,gflops")
    a, b = (line.split(",") for line in lines[1:])
    assert float(a[5]) > float(b[5])  # kernel 7 -> 3 costs less
    # trained scale: half width, 1 channel, 10 classes, 32 px -> far fewer params and FLOPs
    cols = lines[0].split(",")
    assert int(a[cols.index("params_train")]) < int(a[cols.index("params")]) / 3


def test_help_explains_the_commands() -> None:
    r = invoke("--help")
    assert r.exit_code == 0 and "flops" in r.stdout and "validate" in r.stdout
    r = invoke("flops", "--help")
    assert "--set" in r.stdout and "gflops_train" in r.stdout


def test_bad_format_is_a_one_line_error() -> None:
    r = invoke("flops", str(STUDIES / "roadmap.yaml"), "--format", "xml")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "xml" in r.stderr


@pytest.mark.slow
def test_env_cache_dir_is_used(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(GOOD)
    cache = tmp_path / "c"
    r = run_cli("flops", str(study), env={"ABLATE_CACHE_DIR": str(cache)})
    assert r.returncode == 0, r.stderr
    assert len(list((cache / "counts").glob("*.json"))) == 2  # paper scale + trained scale
    assert os.environ["ABLATE_CACHE_DIR"] != str(cache)


@pytest.mark.slow
def test_a_timm_model_is_counted_like_the_others() -> None:
    r = run_cli("flops", str(STUDIES / "references.yaml"), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["Swin-T"]["params"] == 28_288_354 and rows["Swin-T"]["kind"] == "timm"
    assert abs(rows["Swin-T"]["gflops"] - 4.5) <= 0.1
    assert rows["ConvNeXt-B"]["params"] == 88_591_464


@pytest.mark.slow
def test_run_with_missing_data_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nmodel: {preset: convnext_atto}\ndata: {dataset: cifar10, root: " + str(tmp_path / "no")
                     + "}\nrecipe: {epochs: 1}\n")
    r = run_cli("run", str(study), "--results", str(tmp_path / "results"), cwd=tmp_path, env={"ABLATE_OFFLINE": "1"})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{study}: data: cifar10:"), r.stderr
    assert not (tmp_path / "results").exists()
