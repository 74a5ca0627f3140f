"""`ablate compare`: two real (tiny) runs side by side, matched by step name, with intervals and costs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.config.errors import StudyError

TINY = """
name: {name}
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {{dataset: synthetic, image_size: 16, train_subset: {n}, val_subset: 64}}
recipe: {{preset: classic, epochs: 1, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
seeds: [0, 1]
steps:
  - {{name: base, reference: {{top1: 70.0}}}}
  - {{name: kernel 5, set: {{kernel_size: 5}}, reference: {{top1: 71.0}}}}
  - {{name: gelu, set: {{activation: gelu}}, reference: {{top1: 71.5}}}}
"""


def write(tmp: Path, name: str, n: int, extra: str = "") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(TINY.format(name=name, n=n) + extra)
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    small = write(tmp, "small", 64)
    big = write(tmp, "big", 128, "  - {name: silu, set: {activation: silu}, reference: {top1: 71.4}}\n")
    runner = CliRunner()
    for path in (small, big):
        r = runner.invoke(app, ["run", str(path), "--results", str(tmp / "results")])
        assert r.exit_code == 0, r.output
    return tmp, small, big


@pytest.mark.slow
def test_compare_two_real_runs(two_runs: tuple[Path, Path, Path]) -> None:
    tmp, small, big = two_runs
    r = CliRunner().invoke(app, ["compare", str(small), str(big), "--results", str(tmp / "results"),
                                 "--out", str(tmp / "reports")])
    assert r.exit_code == 0, r.output
    out = tmp / "reports" / "compare-small-big"
    for f in ("compare.md", "compare.html", "compare.png", "compare.svg", "compare.csv"):
        assert (out / f).is_file(), f
    md = (out / "compare.md").read_text()
    summary = pd.read_csv(out / "compare.csv")
    assert list(summary["study"]) == ["small", "big"]
    assert list(summary["seeds"]) == [2, 2] and list(summary["trials_done"]) == [6, 8]
    # cost: train-set size x epochs over finished trials
    assert list(summary["train_images"]) == [6 * 64, 8 * 128]
    assert (summary["trial_seconds"] > 0).all() and summary["wall_seconds"].notna().all()
    for _, row in summary.iterrows():  # rho and its bootstrap interval over the 2 seeds
        if pd.notna(row["rho_levels"]):
            assert row["rho_levels_lo"] <= row["rho_levels"] <= row["rho_levels_hi"]
    # steps matched by name, the unmatched one listed
    assert "`small` has no step named: silu." in md
    per_step = md.split("## Per step")[1]
    assert all(name in per_step for name in ("base", "kernel 5", "gelu", "silu"))
    assert "(no such step)" in per_step
    page = (out / "compare.html").read_text()
    assert "data:image/png;base64," in page and "src='compare.png'" not in page


def test_compare_a_never_run_study_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    first, never = write(tmp_path, "first", 64), write(tmp_path, "never", 64)
    reports = tmp_path / "reports"
    r = CliRunner().invoke(app, ["compare", str(first), str(never), "--results", str(tmp_path / "results"),
                                 "--out", str(reports)])
    # in process the command raises the one-line StudyError that `ablate` prints with exit code 2
    assert isinstance(r.exception, StudyError), r.output
    assert str(r.exception).startswith(f"{first}: results: no results yet")
    assert not reports.exists() and not (tmp_path / "results").exists()  # reading created nothing


@pytest.mark.slow
def test_compare_needs_two_distinct_studies(tmp_path: Path) -> None:
    import subprocess
    import sys

    small = write(tmp_path, "small", 64)
    for args in ([str(small)], [str(small), str(small)]):
        r = subprocess.run([sys.executable, "-m", "ablate", "compare", *args, "--out", str(tmp_path / "r")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "r").exists()
