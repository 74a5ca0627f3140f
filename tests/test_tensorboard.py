"""`ablate run --tensorboard DIR`: each trial's per-epoch metrics as TensorBoard scalars (read back with
tensorboard's own EventAccumulator), and a one-line error when the package is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app

STUDY = """name: tb
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}
recipe: {preset: classic, epochs: 2, batch_size: 32, warmup_epochs: 0, lr: 0.05}
steps:
  - {name: base}
  - {name: k5, set: {kernel_size: 5}}
"""


def test_tensorboard_scalars_per_trial_and_epoch(tmp_path: Path, empty_cache: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    study = tmp_path / "tb.yaml"
    study.write_text(STUDY)
    tb = tmp_path / "tb-logs"
    r = CliRunner().invoke(app, ["run", str(study), "--results", str(tmp_path / "results"), "--tensorboard", str(tb)])
    assert r.exit_code == 0, r.output
    runs = sorted(p for p in (tb / "tb").iterdir())
    assert len(runs) == 2  # one folder per trial id
    for run in runs:
        acc = EventAccumulator(str(run))
        acc.Reload()
        assert {"top1", "train_loss"} <= set(acc.Tags()["scalars"]), acc.Tags()["scalars"]
        top1 = acc.Scalars("top1")
        assert [e.step for e in top1] == [1, 2]
        metrics = (tmp_path / "results" / "tb" / "trials" / run.name / "metrics.csv").read_text().splitlines()
        head = metrics[0].split(",")
        expect = [float(line.split(",")[head.index("top1")]) for line in metrics[1:]]
        assert [e.value for e in top1] == pytest.approx(expect, rel=1e-6)  # TensorBoard stores float32


def test_tensorboard_without_the_package_is_one_line_and_trains_nothing(tmp_path: Path) -> None:
    from conftest import run_cli

    blocked = tmp_path / "blocked" / "tensorboard"  # a `tensorboard` that cannot be imported, first on the path
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed here')\n")
    study = tmp_path / "tb.yaml"
    study.write_text(STUDY)
    r = run_cli("run", str(study), "--results", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb-logs"),
                env={"PYTHONPATH": str(tmp_path / "blocked")})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == ["--tensorboard: needs the tensorboard package: pip install "
                                             "'ablate[tensorboard]'"]
    assert not (tmp_path / "results").exists() and not (tmp_path / "tb-logs").exists()
