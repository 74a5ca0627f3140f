"""What optuna (and optuna-dashboard) users expect of the ledger's trials: `params` with the fields the
study changes and a learning curve (`intermediate_values`, one per epoch), read with optuna's own API."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.params import param_space, variant_params

STUDY = """
name: {name}
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {{dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}}
recipe: {{preset: classic, epochs: {epochs}, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
"""
STEPS = """steps:
  - {name: base}
  - {name: k5, set: {kernel_size: 5, depths: [1, 2]}}
  - {name: gelu, set: {activation: gelu}}
"""


def write(tmp_path: Path, name: str, body: str, epochs: int = 2) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, epochs=epochs) + body)
    return path


def optuna_trials(results: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(results / name / "ledger.journal")))
    return optuna.load_study(study_name=name, storage=storage).trials


def test_param_space_spans_what_the_study_changes(tmp_path: Path) -> None:
    loaded = load_study(write(tmp_path, "sp", STEPS))
    space = param_space(loaded)
    assert list(space) == ["depths", "kernel_size", "activation"]  # every field some step changes, in study order
    assert isinstance(space["kernel_size"], optuna.distributions.IntDistribution)
    assert (space["kernel_size"].low, space["kernel_size"].high) == (3, 5)
    assert space["depths"].choices == ("[1, 1]", "[1, 2]")  # lists as JSON text
    assert space["activation"].choices == ("relu", "gelu")
    params = [variant_params(v, space) for v in loaded.variants]
    assert params[1] == {"depths": "[1, 2]", "kernel_size": 5, "activation": "relu"}
    for v, p in zip(loaded.variants, params, strict=True):  # each variant's own changes are in its params
        for field, (_, new) in (v.changes or {}).items():
            assert p[field] == (new if not isinstance(new, list) else str(new).replace("'", '"'))
    search = write(tmp_path, "se", "search: {sampler: random, trials: 2, space: {recipe.lr: [0.01, 0.1]}}\n")
    assert param_space(load_study(search)) == {}  # a search's params are its sampled dimensions


def test_a_finished_trial_has_params_and_one_intermediate_value_per_epoch(tmp_path: Path) -> None:
    from ablate.sweep.worker import WorkerOptions, work

    path = write(tmp_path, "dash", "steps:\n  - {name: base}\n  - {name: k5, set: {kernel_size: 5}}\n")
    results = tmp_path / "results"
    loaded = load_study(path)
    Ledger(loaded, LedgerOptions(None, results)).sync()
    stats = work(loaded, WorkerOptions(ledger=LedgerOptions(results_root=results), threads=1, progress=False))
    assert stats == {"done": 2, "failed": 0, "pruned": 0}
    trials = optuna_trials(results, "dash")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert [t.params for t in trials] == [{"kernel_size": 3}, {"kernel_size": 5}]
    assert all(isinstance(t.distributions["kernel_size"], optuna.distributions.IntDistribution) for t in trials)
    for t in trials:
        assert sorted(t.intermediate_values) == [1, 2], t.intermediate_values  # step = epoch
        curve = (results / "dash" / "trials" / t.user_attrs["trial_id"] / "metrics.csv").read_text().splitlines()
        top1 = [float(line.split(",")[4]) for line in curve[1:]]
        assert [t.intermediate_values[e] for e in (1, 2)] == pytest.approx(top1)
        assert t.values == [pytest.approx(top1[-1])]
    # ablate still reads its trials by variant id: params are a view for optuna's tools
    reader = Ledger(loaded, LedgerOptions(None, results, readonly=True))
    assert set(reader.latest()) == set(Ledger(loaded, LedgerOptions(None, results)).by_key)


def test_an_edited_study_leaves_out_a_param_whose_choices_changed(tmp_path: Path) -> None:
    path = write(tmp_path, "ed", "steps:\n  - {name: base}\n  - {name: gelu, set: {activation: gelu}}\n")
    led = Ledger(load_study(path), LedgerOptions(None, tmp_path / "results"))
    led.sync()
    first = led.pop()
    assert led.store.storage.get_trial(first.trial_id).params["activation"] == "relu"
    path.write_text(path.read_text() + "  - {name: silu, set: {activation: silu, kernel_size: 5}}\n")
    led = Ledger(load_study(path), LedgerOptions(None, tmp_path / "results"))
    led.sync()
    items = [led.pop() for _ in range(2)]
    for item in items:  # activation's choices differ from the recorded ones: left out, the rest recorded, no error
        assert "activation" not in led.store.storage.get_trial(item.trial_id).params
        assert "kernel_size" in led.store.storage.get_trial(item.trial_id).params


def test_a_resumed_trial_reports_the_epochs_of_its_checkpoint_first(tmp_path: Path, one_thread) -> None:
    from ablate.train.engine import run_trial

    v = load_study(write(tmp_path, "res", "variants:\n  - {name: a}\n", epochs=2)).variants[0]
    stop = threading.Event()
    seen: list[int] = []

    def first(row: dict) -> None:
        seen.append(row["epoch"])
        stop.set()  # stop after epoch 1

    with pytest.raises(KeyboardInterrupt):
        run_trial(v, 0, tmp_path / "t", progress=False, stop=stop, on_epoch=first)
    assert seen == [1]
    rows: list[dict] = []
    run_trial(v, 0, tmp_path / "t", progress=False, on_epoch=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2]  # the checkpoint's epoch, then the one trained now
