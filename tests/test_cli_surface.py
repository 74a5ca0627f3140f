"""The command line's surface (issue 27): `-h`, bare `ablate`, --quiet/--verbose, help text that the terminal wraps,
`status --format csv|json`, `run`'s final table on stdout, `-` for a missing value, whole epochs as integers,
what a run says it will train, `status` on a committed results.csv, the CSV fallback honouring `--set seeds`,
and `ablate schema` / `fields` / `presets`. One tiny training run (synthetic data) is shared by the module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from conftest import STUDIES, run_cli
from test_ledger import ledger
from test_messages import search_study
from typer.testing import CliRunner

from ablate.cli import app
from ablate.commands.sweep import queue_line
from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.record import TrialRecord
from ablate.sweep.states import FailKind, Status

TINY = """name: tiny
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}
recipe: {preset: classic, epochs: 1, batch_size: 32, warmup_epochs: 0, lr: 0.05}
seeds: [0, 1]
steps:
  - {name: base}
"""


def invoke(*args: str, **kwargs) -> Result:
    return CliRunner().invoke(app, list(args), one_line_errors=True, **kwargs)


def test_h_is_help_everywhere_and_bare_ablate_is_the_help_with_exit_0() -> None:
    for args in (["-h"], ["status", "-h"], ["run", "-h"]):
        r = invoke(*args)
        assert r.exit_code == 0 and "Usage" in r.stdout, (args, r.output)
    r = run_cli()  # the real entry point, no arguments
    assert r.returncode == 0 and "Usage" in r.stdout and "Commands" in r.stdout and r.stderr == "", r.stderr


def test_help_text_is_wrapped_by_the_terminal_not_by_the_docstring() -> None:
    r = invoke("run", "--help", terminal_width=220, env={"COLUMNS": "220"})
    assert "an interrupted trial continues from its last epoch checkpoint, failed trials keep" in r.stdout, r.stdout
    r = invoke("--help", terminal_width=220, env={"COLUMNS": "220"})
    line = next(s for s in r.stdout.splitlines() if " worker " in s)
    assert "(e.g. on another machine with --storage postgresql://...)." in line, line


def test_quiet_and_verbose(tmp_path: Path) -> None:
    r = invoke("--quiet", "--verbose", "validate", "x.yaml")
    assert r.exit_code == 2 and r.stderr.strip() == "--quiet: give --quiet or --verbose, not both"
    r = run_cli("validate", str(tmp_path / "none.yaml"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("--verbose", "validate", str(tmp_path / "none.yaml"))
    assert r.returncode == 2 and r.stderr.startswith(f"{tmp_path / 'none.yaml'}: no such file\nTraceback"), r.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Result]:
    """The study trained for seed 0 only (seed 1 stays new), and the run's result."""
    tmp = tmp_path_factory.mktemp("surface")
    path = tmp / "tiny.yaml"
    path.write_text(TINY)
    r = invoke("run", str(path), "--set", "seeds=[0]", "--results", str(tmp / "results"), "--workers", "1")
    assert r.exit_code == 0, r.output
    return tmp, path, r


def test_run_prints_its_final_table_on_stdout_and_what_it_trains_on_stderr(tiny) -> None:
    tmp, path, r = tiny
    assert r.stdout.startswith("tiny: 1 trials: 1 done\n"), r.stdout
    assert "name seed status attempts" in r.stdout and "Highest mean top-1: base with" in r.stdout
    assert "tiny: 1 trials: 0 already done, 1 to train (1 queued)" in r.stderr, r.stderr
    q = invoke("--quiet", "run", str(path), "--set", "seeds=[0]", "--results", str(tmp / "results"))
    assert q.exit_code == 0 and q.stderr == "" and q.stdout == r.stdout, q.output  # nothing to train, nothing said


def test_status_shows_a_dash_for_missing_values_and_whole_epochs(tiny) -> None:
    tmp, path, _ = tiny
    r = invoke("status", str(path), "--results", str(tmp / "results"))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "tiny: 2 trials: 1 done, 1 new"
    done, new = lines[2].split(), lines[3].split()
    assert done[:3] == ["base", "0", "done"] and done[5] == "1" and done[6] == "-", done  # epochs 1, no reason
    assert new == ["base", "1", "new", "0", "-", "-", "-"], new
    assert "None" not in r.stdout and "1.00" not in r.stdout and "best so far" not in r.stdout
    assert "Highest mean top-1: base with" in r.stdout and "no interval" in r.stdout


def test_status_as_json_and_csv(tiny) -> None:
    tmp, path, _ = tiny
    r = invoke("status", str(path), "--results", str(tmp / "results"), "--format", "json")
    data = json.loads(r.stdout)
    assert data["study"] == "tiny" and data["counts"] == {"done": 1, "new": 1}
    first, second = data["trials"]
    assert first["epochs"] == 1 and isinstance(first["epochs"], int) and isinstance(first["top1"], float)
    assert isinstance(first["seed"], int) and isinstance(first["attempts"], int)
    assert second["status"] == "new" and second["top1"] is None and second["fail_reason"] is None
    r = invoke("status", str(path), "--results", str(tmp / "results"), "--format", "csv")
    df = pd.read_csv(pd.io.common.StringIO(r.stdout))
    assert list(df.columns) == ["name", "seed", "status", "attempts", "top1", "epochs", "fail_reason"]
    assert list(df["status"]) == ["done", "new"] and df["top1"].isna().tolist() == [False, True]
    assert invoke("status", str(path), "--format", "xml").exit_code == 2


def test_status_and_report_read_a_committed_results_csv_with_the_study_seeds(tiny) -> None:
    """No ledger, only results.csv (as committed): status reads it as report and compare do, and `--set seeds`
    leaves out the rows of other seeds, in status and in the report."""
    tmp, path, _ = tiny
    committed = tmp / "committed" / "tiny"
    committed.mkdir(parents=True)
    df = pd.read_csv(tmp / "results" / "tiny" / "results.csv")
    pd.concat([df, df.assign(seed=7, trial_id="other")]).to_csv(committed / "results.csv", index=False)
    r = invoke("status", str(path), "--results", str(committed.parent), "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"] == {"done": 1, "new": 1}  # seeds 0 (done) and 1 (new); not 7
    r = invoke("status", str(path), "--results", str(committed.parent), "--set", "seeds=[0, 7]")
    assert r.stdout.startswith("tiny: 2 trials: 2 done"), r.stdout
    out = tmp / "reports"
    r = invoke("report", str(path), "--results", str(committed.parent), "--out", str(out), "--no-charts",
               "--set", "seeds=[0]")
    assert r.exit_code == 0, r.output
    md = (out / "tiny" / "report.md").read_text()
    assert "(n = 1" in md and "1 row(s) of results.csv are of seeds this study does not run (7" in md
    assert not (committed / "ledger.journal").exists()  # reading wrote no ledger
    shutil.rmtree(out)


def test_a_run_says_what_it_will_train(tmp_path: Path) -> None:
    """A search samples its trials as it runs; a failed trial is not retried: the line counts what is trained."""
    loaded = load_study(search_study(tmp_path))
    led = Ledger(loaded, LedgerOptions(None, tmp_path / "results"))
    line = queue_line(led, 5, led.sync())
    assert line.startswith("s: 5 trials: 0 already done, 5 to train (5 sampled by the search as it runs) (ledger")
    led = ledger(tmp_path)
    led.sync()
    a, b = led.pop(), led.pop()
    led.complete(a, TrialRecord(top1=1.0))
    led.fail(b, "boom", kind=FailKind.ERROR)
    counts = led.sync()
    assert counts[Status.DONE] == 1
    line = queue_line(led, 4, counts)
    assert line.startswith("led: 4 trials: 1 already done, 2 to train (2 queued, 2 of them by an earlier run), 1 "
                           "failed and not retried (--retry-failed trains it) (ledger"), line


def test_schema_fields_and_presets() -> None:
    from ablate.config.presets import PRESETS
    from ablate.config.study import Study

    r = invoke("schema")
    schema = json.loads(r.stdout)
    assert schema["$schema"].endswith("2020-12/schema") and set(Study.model_fields) <= set(schema["properties"])
    model = schema["$defs"]["Model"]["properties"]
    assert model["preset"]["enum"] == list(PRESETS) and "kernel_size" in model and "extends" in schema["properties"]
    assert schema["properties"]["model"]["$ref"] == "#/$defs/Model"
    step = schema["$defs"]["Step"]["properties"]
    assert "kernel_size" in step["set"]["properties"] and "anyOf" in step["model"]
    import yaml

    for f in STUDIES.glob("*.yaml"):  # every key the shipped studies use is one the schema knows
        d = yaml.safe_load(f.read_text())
        assert set(d) <= set(schema["properties"]), f
        assert set(d.get("model") or {}) <= set(model), f
    r = invoke("fields")
    assert r.exit_code == 0 and any(s.startswith("model.kernel_size ") for s in r.stdout.splitlines())
    assert any(s.startswith("recipe.epochs ") and "Training epochs" in s for s in r.stdout.splitlines())
    assert invoke("fields", "recipe").stdout.splitlines()[0].startswith("recipe ")
    assert invoke("fields", "nosuch").exit_code == 2
    r = invoke("presets")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("network presets") and any("recipe presets" in s for s in lines)
    assert all(any(s.split()[:1] == [name] for s in lines) for name in [*PRESETS, "modern", "classic"])
    assert any(s.split()[0] == "convnext_tiny" and "paper: top-1 82.1 %" in s for s in lines[1:40])


def test_the_readme_says_how_to_install_the_cpu_build() -> None:
    readme = (STUDIES.parent / "README.md").read_text()
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in readme
