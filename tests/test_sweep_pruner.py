"""A `search:` study's optuna pruner: a trial whose learning curve falls behind stops early and is recorded as
pruned (optuna PRUNED, ablate status `pruned`, with its reason), and the search goes on; studies of fixed
variants never prune; an unknown pruner is a one-line error naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from test_integrity import cli, error_lines  # noqa: F401 - `cli` is a fixture

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.states import State, Status

STUDY = """
name: {name}
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {{dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}}
recipe: {{preset: classic, epochs: 3, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
"""


def search(tmp_path: Path, name: str, pruner: str, sampler: str = "random") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name) + f"search: {{sampler: {sampler}, trials: 2, pruner: {pruner}, "
                    "space: {recipe.lr: {low: 0.01, high: 0.1}}}\n")
    return path


def test_a_pruned_trial_is_recorded_as_pruned_and_the_search_goes_on(tmp_path: Path, one_thread) -> None:
    from ablate.sweep.worker import WorkerOptions, work

    path, results = search(tmp_path, "pr", "median"), tmp_path / "results"
    loaded = load_study(path)
    led = Ledger(loaded, LedgerOptions(None, results))
    # five finished trials (not ablate's: no trial id) whose curves no real trial reaches: optuna's median
    # pruner (5 startup trials) stops every trial of ours after its first epoch
    for _ in range(5):
        led.store.study.add_trial(optuna.trial.create_trial(value=1000.0, intermediate_values={1: 1000.0, 2: 1000.0}))
    stats = work(loaded, WorkerOptions(ledger=LedgerOptions(None, results), threads=1, progress=False))
    assert stats == {Status.DONE: 0, Status.FAILED: 0, Status.PRUNED: 2}  # pruned, and the search went on

    led = Ledger(loaded, LedgerOptions(None, results, readonly=True))
    ours = [t for t in led.trials() if t.user_attrs.get("trial_id")]
    assert len(ours) == 2 and len({t.user_attrs["trial_id"] for t in ours}) == 2
    for t in ours:
        assert t.state is State.PRUNED and Status.of(t) == Status.PRUNED
        assert t.user_attrs[Status.PRUNED] == "pruned at epoch 1 by the median pruner"
        assert list(t.intermediate_values) == [1] and t.user_attrs["epochs"] == 1
        assert t.value == pytest.approx(t.intermediate_values[1])  # optuna: the last reported value
        metrics = pd.read_csv(results / "pr" / "trials" / t.user_attrs["trial_id"] / "metrics.csv")
        assert list(metrics["epoch"]) == [1]  # training stopped there (of 3 epochs)
    df = pd.read_csv(results / "pr" / "results.csv")
    assert list(df["status"]) == ["pruned", "pruned"]
    assert set(df["fail_reason"]) == {"pruned at epoch 1 by the median pruner"}
    assert led.progress() == (2, 2)  # the search's budget is spent: pruned trials ended

    # nothing is queued again, and another worker trains nothing
    led = Ledger(loaded, LedgerOptions(None, results))
    assert led.sync() == {Status.QUEUED: 0, Status.DONE: 0}
    assert work(loaded, WorkerOptions(ledger=LedgerOptions(None, results), threads=1, progress=False)) == {
        Status.DONE: 0, Status.FAILED: 0, Status.PRUNED: 0}


@pytest.mark.parametrize(("pruner", "kind"), [("median", optuna.pruners.MedianPruner),
                                              ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
                                              ("hyperband", optuna.pruners.HyperbandPruner),
                                              ("none", optuna.pruners.NopPruner)])
def test_each_pruner_name_is_optunas_pruner(tmp_path: Path, pruner: str, kind: type) -> None:
    loaded = load_study(search(tmp_path, f"p{pruner}", pruner, sampler="tpe"))
    led = Ledger(loaded, LedgerOptions(None, tmp_path / "results"))
    assert isinstance(led.store.study.pruner, kind)


def test_studies_of_fixed_variants_never_prune(tmp_path: Path) -> None:
    steps = tmp_path / "st.yaml"
    steps.write_text(STUDY.format(name="st") + "steps:\n  - {name: a}\n  - {name: b, set: {kernel_size: 5}}\n")
    grid = search(tmp_path, "gr", "median", sampler="grid").read_text().replace(
        "{low: 0.01, high: 0.1}", "[0.01, 0.1]")
    (tmp_path / "gr.yaml").write_text(grid)
    for path in (steps, tmp_path / "gr.yaml"):
        led = Ledger(load_study(path), LedgerOptions(None, tmp_path / "results"))
        assert isinstance(led.store.study.pruner, optuna.pruners.NopPruner)  # not optuna's default (a median pruner)
        led.sync()
        item = led.pop()
        led.report(item, [{"epoch": 1, "top1": 0.0}])
        assert led.prune_reason(item, 1) is None


def test_an_unknown_pruner_is_one_line_naming_the_file_and_the_field(cli, tmp_path: Path) -> None:  # noqa: F811
    path = search(tmp_path, "s", "medain")
    code, _, err = cli("validate", str(path))
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{path}: search.pruner: unknown value 'medain'"), err
    assert "median" in lines[0] and "successive_halving" in lines[0] and "hyperband" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # nothing written
