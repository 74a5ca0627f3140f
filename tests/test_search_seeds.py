"""Searches judged over seeds: `search.seeds: n` trains each sampled configuration on n seeds and optuna sees
their mean; `search.confirm: k` retrains the best k on `confirm_seeds` seeds before the report names a winner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.states import State

pytestmark = pytest.mark.slow  # end to end: `ablate run` and `ablate report` subprocesses

STUDY = """
name: se
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16, train_subset: 256, val_subset: 128}
recipe: {preset: classic, epochs: 1, batch_size: 32, warmup_epochs: 0, lr: 0.05}
search: {sampler: random, trials: 3, seeds: 2, confirm: 1, confirm_seeds: 3, space: {kernel_size: [3, 5, 7]}}
"""


def test_search_with_two_seeds_reports_means_over_both_and_confirms_the_best(tmp_path: Path) -> None:
    path = tmp_path / "se.yaml"
    path.write_text(STUDY)
    ran = run_cli("run", str(path), cwd=tmp_path, env={"ABLATE_WORKERS": "1"})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "confirming the best 1 configurations: 1 trial(s) queued" in ran.stderr
    df = pd.read_csv(tmp_path / "results" / "se" / "results.csv")
    assert (df["status"] == "done").all()
    seeds = df.groupby("id")["seed"].apply(sorted)
    assert sorted(seeds.map(len)) == [2, 2, 3] and all(s in ([0, 1], [0, 1, 2]) for s in seeds)
    # optuna's objective of each sampled configuration is the mean of its two seeds' top-1
    led = Ledger(load_study(path), LedgerOptions(None, tmp_path / "results", readonly=True))
    sampled = [t for t in led.trials() if t.state is State.COMPLETE and not t.user_attrs.get("confirm")]
    assert len(sampled) == 3
    for t in sampled:
        rows = df[(df["id"] == t.user_attrs["variant_id"]) & df["seed"].isin([0, 1])]
        assert t.value == pytest.approx(rows["top1"].mean(), abs=1e-6)
        trials = tmp_path / "results" / "se" / "trials"
        for s in (0, 1):  # each seed trained in its own folder
            assert (trials / f"{t.user_attrs['variant_id']}-s{s}" / "metrics.csv").is_file()
    # the confirmed configuration: the sampled best by its mean
    best = max(sampled, key=lambda t: t.value)
    assert seeds[best.user_attrs["variant_id"]] == [0, 1, 2]
    summary = pd.read_csv(tmp_path / "results" / "se" / "summary.csv").set_index("id")
    for vid, g in df.groupby("id"):
        assert summary.loc[vid, "top1_mean"] == pytest.approx(g["top1"].mean(), abs=1e-3)
        assert summary.loc[vid, "n"] == len(g) and summary.loc[vid, "top1_ci_low"] < summary.loc[vid, "top1_mean"]
    rep = run_cli("report", str(path), "--no-charts", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    md = (tmp_path / "reports" / "se" / "report.md").read_text()
    name = df.loc[df["id"] == best.user_attrs["variant_id"], "name"].iloc[0]
    assert "Each configuration was trained on 2 seeds; the objective optuna maximised is their mean" in md
    assert f"Winner after confirmation (the best 1 sampled configurations retrained on 3 seeds): **{name}**" in md
