"""results.csv is an export a worker rewrites at most every RESULTS_EVERY seconds, and always when it stops,
however it stops: every finished trial reaches it (in-process workers, synthetic data). summary.csv (whose
statistics import scipy) is the commands' to write (`ablate worker`, `ablate run`), never a worker's. A worker of
`ablate run` (parent_writes) leaves the exports to the run when it runs out of work, and writes results.csv
when stopped."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from ablate.config.load import load_study
from ablate.sweep import results as results_mod
from ablate.sweep import worker as worker_mod
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.states import Status

STUDY = """
name: exp
model: {depths: [1, 1], dims: [8, 16], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 8}
data: {dataset: synthetic, image_size: 8, train_subset: 32, val_subset: 16}
recipe: {preset: classic, epochs: 1, batch_size: 16, warmup_epochs: 0, lr: 0.05}
seeds: [0, 1, 2]
"""


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: float) -> tuple:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path, results = tmp_path / "exp.yaml", tmp_path / "results"
    path.write_text(STUDY)
    loaded = load_study(path)
    Ledger(loaded, LedgerOptions(None, results)).sync()
    calls: list[int] = []  # one entry per write of results.csv
    real = results_mod.write_results

    def counted(ledger, df=None):  # noqa: ANN001, ANN202
        calls.append(1)
        return real(ledger, df)

    monkeypatch.setattr(worker_mod, "write_results", counted)
    monkeypatch.setattr(worker_mod, "RESULTS_EVERY", every)
    opts = worker_mod.WorkerOptions(ledger=LedgerOptions(None, results), threads=1, progress=False)
    return loaded, opts, results / "exp" / "results.csv", calls


@pytest.mark.parametrize(("every", "writes"), [(1e9, [1]), (0.0, [1, 1, 1, 1])])
def test_a_worker_rewrites_results_csv_at_most_every_so_often_and_when_it_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: float, writes: list[int], one_thread) -> None:  # noqa: ANN001
    loaded, opts, csv, calls = _setup(tmp_path, monkeypatch, every)
    assert worker_mod.work(loaded, opts) == {Status.DONE: 3, Status.FAILED: 0, Status.PRUNED: 0}
    # throttled: once, at the end; unthrottled: after each of the 3 trials, then once more as it stops
    assert calls == writes
    df = pd.read_csv(csv)
    assert list(df["status"]) == ["done"] * 3 and df["top1"].notna().all()
    assert df["gflops"].notna().all()  # each trial's record holds its counts
    assert not csv.with_name("summary.csv").exists()  # the commands write it (`ablate worker`, `ablate run`)


def test_a_worker_of_ablate_run_leaves_the_exports_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:  # noqa: ANN001
    loaded, opts, csv, calls = _setup(tmp_path, monkeypatch, 1e9)
    opts.parent_writes = True
    assert worker_mod.work(loaded, opts)[Status.DONE] == 3
    assert calls == [] and not csv.exists()  # ran out of work: `ablate run` writes both files next

    loaded, opts, csv, calls = _setup(tmp_path / "periodic", monkeypatch, 0.0)
    opts.parent_writes = True
    assert worker_mod.work(loaded, opts)[Status.DONE] == 3
    assert calls == [1] * 3 and not csv.with_name("summary.csv").exists()  # rewrites while it trains
    assert list(pd.read_csv(csv)["status"]) == ["done"] * 3


def test_a_worker_of_ablate_run_stopped_between_trials_writes_results_csv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:  # noqa: ANN001
    loaded, opts, csv, calls = _setup(tmp_path, monkeypatch, 1e9)
    opts.parent_writes = True
    stop = __import__("threading").Event()
    real_attempt = worker_mod._attempt

    def attempt_then_sigterm(*args):  # noqa: ANN002, ANN202 - SIGTERM arrives during the first trial
        out = real_attempt(*args)
        stop.set()
        return out

    monkeypatch.setattr(worker_mod, "_attempt", attempt_then_sigterm)
    assert worker_mod.work(loaded, opts, stop)[Status.DONE] == 1
    assert calls == [1]
    assert sorted(pd.read_csv(csv)["status"]) == ["done", "queued", "queued"]


def test_a_worker_stopped_between_trials_still_exports_what_it_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:  # noqa: ANN001
    loaded, opts, csv, calls = _setup(tmp_path, monkeypatch, 1e9)
    real_next, taken = worker_mod._next_item, []

    def next_then_interrupt(*args):  # noqa: ANN002, ANN202 - Ctrl-C arrives while the second trial is taken
        if taken:
            raise KeyboardInterrupt
        taken.append(1)
        return real_next(*args)

    monkeypatch.setattr(worker_mod, "_next_item", next_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        worker_mod.work(loaded, opts)
    assert calls == [1]
    df = pd.read_csv(csv)
    assert sorted(df["status"]) == ["done", "queued", "queued"]  # the one finished trial is in the export


def test_ablate_run_stopped_by_ctrl_c_writes_the_summary_its_workers_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:  # noqa: ANN001
    import sys

    from ablate.cli import main
    from ablate.commands import sweep as sweep_cmd

    path = tmp_path / "exp.yaml"
    path.write_text(STUDY)

    def one_trial_then_ctrl_c(loaded, overrides, workers, opts, *rest):  # noqa: ANN001, ANN202
        worker_mod.work(loaded, dataclasses.replace(opts, max_trials=1, parent_writes=True, progress=False))
        raise KeyboardInterrupt  # as run_workers raises it after stopping its worker processes

    monkeypatch.setattr(sweep_cmd, "_train", one_trial_then_ctrl_c)
    monkeypatch.setattr(sys, "argv", ["ablate", "run", str(path), "--results", str(tmp_path / "results"),
                                      "--workers", "2"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 130
    summary = pd.read_csv(tmp_path / "results" / "exp" / "summary.csv")
    assert list(summary["n"]) == [1]


@pytest.mark.parametrize("parent_writes", [False, True])
def test_a_trial_interrupted_while_it_trains_reaches_results_csv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread, parent_writes: bool) -> None:  # noqa: ANN001
    loaded, opts, csv, calls = _setup(tmp_path, monkeypatch, 1e9)
    opts.parent_writes = parent_writes

    def ctrl_c(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202 - Ctrl-C during the first trial's training
        raise KeyboardInterrupt

    monkeypatch.setattr(worker_mod, "_train", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        worker_mod.work(loaded, opts)
    assert calls == [1]  # one export
    df = pd.read_csv(csv)
    assert (df["status"] != "queued").sum() == 1, df[["status", "fail_reason"]]  # the interrupted trial
    assert df["fail_reason"].dropna().str.contains("interrupted").any()


def test_ablate_worker_writes_summary_csv_when_it_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:  # noqa: ANN001
    import sys

    from ablate.cli import main

    path, results = tmp_path / "exp.yaml", tmp_path / "results"
    path.write_text(STUDY)
    Ledger(load_study(path), LedgerOptions(None, results)).sync()
    monkeypatch.setattr(sys, "argv", ["ablate", "worker", str(path), "--results", str(results), "--max-trials", "1"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 0
    assert list(pd.read_csv(results / "exp" / "summary.csv")["n"]) == [1]
