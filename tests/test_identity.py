"""Which study a ledger belongs to, and what a run says it queued: one ledger per study file (its full path, not
its basename), "N queued" counting every trial waiting to be trained, and workers started by `ablate run`
training the version of the study the run queued. In process, no training unless said."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ledger import STUDY

from ablate.config.errors import StudyError
from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.states import Status


def twin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(STUDY.format(name="twin"))
    return path


def test_two_files_of_one_basename_in_two_folders_do_not_share_a_ledger(tmp_path: Path) -> None:
    a, b = twin(tmp_path / "a"), twin(tmp_path / "b")
    results = LedgerOptions(None, tmp_path / "results")
    Ledger(load_study(a), results).sync()
    with pytest.raises(StudyError) as err:
        Ledger(load_study(b), results)
    assert str(err.value).startswith(f"{b}: name: 'twin' is already the name of the study in {a.resolve()}")
    with pytest.raises(StudyError):  # reading commands too: they would show a's trials as b's
        Ledger(load_study(b), results.replace(readonly=True))
    Ledger(load_study(a), results)  # its own file: fine
    a.unlink()  # a moved (here: gone): the ledger follows the file that names it now
    assert Ledger(load_study(b), results).sync()["queued"] == 0  # a's queued trials are b's now


def test_a_rerun_counts_the_trials_an_earlier_run_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ablate.cli import app

    monkeypatch.chdir(tmp_path)
    path = twin(tmp_path)
    first = CliRunner().invoke(app, ["run", str(path), "--enqueue-only"], one_line_errors=True)
    assert "twin: 4 trials: 0 already done, 4 to train (4 queued) (ledger" in first.stderr, first.stderr
    again = CliRunner().invoke(app, ["run", str(path), "--enqueue-only"], one_line_errors=True)
    assert ("twin: 4 trials: 0 already done, 4 to train (4 queued, 4 of them by an earlier run) (ledger"
            in again.stderr), again.stderr


def test_workers_of_a_run_train_the_version_it_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study file edited just after `ablate run --workers N` starts: its workers still take the trials the
    run queued (they are handed the study as the run loaded it, not the file as it is now)."""
    import json
    import multiprocessing as mp

    from ablate.sweep import worker

    path = twin(tmp_path)
    loaded = load_study(path)
    path.write_text(path.read_text().replace("kernel_size: 5", "kernel_size: 7"))  # edited meanwhile
    assert load_study(path).variants[1].id != loaded.variants[1].id
    seen = tmp_path / "seen.json"
    fork = mp.get_context("fork")  # (not spawn: the child keeps the stub below)
    monkeypatch.setattr(worker.mp, "get_context", lambda _method: fork)
    monkeypatch.setattr(worker, "work", lambda study, opts, stop: seen.write_text(
        json.dumps([v.id for v in study.variants])) and {Status.FAILED: 0})
    assert worker.run_workers(loaded, 1, worker.WorkerOptions(threads=1)) == [0]
    assert json.loads(seen.read_text()) == [v.id for v in loaded.variants]
