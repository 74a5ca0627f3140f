"""A data-parallel trial (DDP, 2 gloo processes) ends where the same trial on one process does."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ablate.config.load import load_study
from ablate.train.ddp import run_trial_ddp
from ablate.train.engine import TrialFailed, run_trial

pytestmark = pytest.mark.slow  # subprocesses, signals, servers: CI runs them, `-m "not slow"` skips them

STUDY = """
name: ddp
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 2.0, norm: layer, norms: one,
        activations: one, spatial_conv: first, groups: depthwise, downsample: separate, kernel_size: 3}
data: {dataset: synthetic, image_size: 16, train_subset: 512, val_subset: 128}
recipe: {preset: classic, epochs: 2, batch_size: 32, warmup_epochs: 0, lr: 0.05, hflip: 0.5, crop_scale: [0.5, 1.0]}
"""


@pytest.fixture
def variant(tmp_path: Path):
    path = tmp_path / "ddp.yaml"
    path.write_text(STUDY)
    return load_study(path).variants[0]


def test_two_gloo_processes_match_one_process(variant, tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        one = run_trial(variant, 0, tmp_path / "one", device="cpu", threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    two = run_trial_ddp(variant, 0, tmp_path / "two", 2, device="cpu", threads=1)
    # the same global batches, gradients averaged over two halves: the same updates up to float
    # summation order (tolerance: 1e-3 relative on the loss, one validation image on top-1)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-3)
    assert abs(two["top1"] - one["top1"]) <= 100 / 128 + 1e-9
    assert two["epochs"] == one["epochs"] == 2
    a = pd.read_csv(tmp_path / "one" / "metrics.csv")
    b = pd.read_csv(tmp_path / "two" / "metrics.csv")  # written once, by rank 0
    assert list(b["epoch"]) == [1, 2]
    assert b["train_loss"].to_numpy() == pytest.approx(a["train_loss"].to_numpy(), rel=1e-3)
    assert (tmp_path / "two" / "checkpoint.pt").exists()


def test_a_diverging_ddp_trial_fails_on_every_rank(variant, tmp_path: Path) -> None:
    bad = variant.__class__(**{**variant.__dict__, "recipe": variant.recipe.model_copy(update={"lr": 1e30})})
    with pytest.raises(TrialFailed, match="non-finite loss"):
        run_trial_ddp(bad, 0, tmp_path / "bad", 2, device="cpu", threads=1)


def test_worker_runs_trials_data_parallel(tmp_path: Path) -> None:
    from conftest import run_cli

    path = tmp_path / "ddp.yaml"
    path.write_text(STUDY.replace("epochs: 2", "epochs: 1") + "variants:\n  - {name: a}\n  - {name: b, set: "
                    "{kernel_size: 5}}\n")
    results = tmp_path / "results"
    r = run_cli("run", str(path), "--results", str(results), "--enqueue-only", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("worker", str(path), "--results", str(results), "--nproc-per-node", "2", "--no-linger", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(results / "ddp" / "results.csv")
    assert list(df["status"]) == ["done", "done"] and (df["epochs"] == 1).all()
