"""No trial is left `running` for ever, and no live trial is taken over: a trial whose owner cannot be shown alive
(no owner record long after its claim, a dead local pid, no heartbeat) is resumable; settings under which
either rule would fail (heartbeats off on a server, a grace shorter than the heartbeat) are refused.
In process, no training."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ledger import STUDY, statuses

from ablate.config.load import load_study
from ablate.sweep import view
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerError, LedgerOptions
from ablate.sweep.states import State, Status


def open_ledger(tmp_path: Path, storage: str | None, **kwargs) -> Ledger:
    path = tmp_path / "led.yaml"
    if not path.exists():
        path.write_text(STUDY.format(name="led"))
    return Ledger(load_study(path), LedgerOptions(storage, tmp_path / "results", **kwargs))


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_a_trial_claimed_but_never_recorded_by_its_worker_is_resumable(tmp_path: Path, storage: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker was SIGKILLed (or the disk filled) between the claim (RUNNING) and the record of its host/pid:
    no pid to check, no heartbeat ever sent. Past the grace period the next run queues it again."""
    url = f"sqlite:///{tmp_path / 'l.db'}" if storage == "sqlite" else None
    led = open_ledger(tmp_path, url, heartbeat=1 if url else None)
    led.sync()
    (first, *_) = sorted(led.store.trials(State.WAITING), key=lambda t: t.number)
    assert led.store.claim(first) is not None  # claimed; then killed before `host`/`pid` were written
    key = first.user_attrs["trial_id"]
    assert statuses(led)[key] == Status.RUNNING  # within the grace period: it may be a live worker's
    assert led.sync()[Status.QUEUED] == 0
    monkeypatch.setattr(view, "OWNERLESS_GRACE", 0.0)
    assert statuses(led)[key] == Status.INTERRUPTED  # read-only commands see it as abandoned
    assert led.sync()[Status.QUEUED] == 1  # and the next run trains it again
    assert statuses(led)[key] == Status.QUEUED


@pytest.mark.parametrize(("storage", "heartbeat", "grace", "refused"), [
    ("postgresql://u@127.0.0.1:1/db", 0, None, "--heartbeat: 0 turns off"),
    ("mysql://u@127.0.0.1:1/db", 0, None, "--heartbeat: 0 turns off"),
    ("postgresql://u@127.0.0.1:1/db", 10, 5, "--grace: 5 s is shorter than --heartbeat (10 s)"),
    ("postgresql://u@127.0.0.1:1/db", None, 20, "--grace: 20 s is shorter than --heartbeat (30 s)"),
    ("sqlite:///l.db", 0, None, None),  # one machine: its dead workers are found by their pid
    (None, 0, 1, None),  # a journal has no heartbeats: both ignored
    ("postgresql://u@127.0.0.1:1/db", 10, 10, None),
])
def test_liveness_settings_that_would_strand_or_steal_trials_are_refused(
        storage: str | None, heartbeat: int | None, grace: int | None, refused: str | None) -> None:
    if refused is None:
        LedgerOptions(storage, heartbeat=heartbeat, grace=grace)
        return
    with pytest.raises(LedgerError) as err:
        LedgerOptions(storage, heartbeat=heartbeat, grace=grace)
    assert str(err.value).startswith(refused) and "\n" not in str(err.value)


# ---- faults of the environment: exit 2, the trial resumable, never `failed`

TWO_EPOCHS = STUDY.replace("epochs: 1", "epochs: 2").replace("seeds: [0, 1]", "seeds: [0]")


def cli_run(tmp_path: Path, *args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from ablate.cli import app

    path = tmp_path / "env.yaml"
    path.write_text(TWO_EPOCHS.format(name="env"))
    r = CliRunner().invoke(app, ["run", str(path), "--results", str(tmp_path / "results"), *args],
                           one_line_errors=True)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code, r.stderr


def run_statuses(tmp_path: Path) -> set[str]:
    opts = LedgerOptions(None, tmp_path / "results", readonly=True)
    return set(statuses(Ledger(load_study(tmp_path / "env.yaml"), opts)).values())


def test_a_database_dropped_mid_trial_is_exit_2_and_the_trial_resumable(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from ablate.sweep.epochs import EpochHook

    db = tmp_path / "l.db"
    storage = ("--storage", f"sqlite:///{db}", "--heartbeat", "1")
    report = EpochHook.__call__

    def then_drop(self, row):  # after the first epoch the database loses its tables (dropped, restored, ...)
        report(self, row)
        with sqlite3.connect(db) as con:
            con.executescript("PRAGMA foreign_keys=OFF; DROP TABLE trial_intermediate_values; DROP TABLE trials;")

    monkeypatch.setattr(EpochHook, "__call__", then_drop)
    code, err = cli_run(tmp_path, *storage)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("[", "env:"))]
    assert code == 2 and "the ledger's database failed" in lines[-1] and "Traceback" not in err, err


def test_a_data_parallel_rank_killed_by_a_signal_leaves_the_trial_resumable(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.multiprocessing as mp

    def killed(*args, **kwargs):
        raise mp.ProcessExitedException("process 1 terminated with signal SIGKILL", error_index=1, error_pid=1,
                                        exit_code=-9, signal_name="SIGKILL")

    monkeypatch.setattr(mp, "start_processes", killed)
    path = tmp_path / "env.yaml"
    path.write_text(TWO_EPOCHS.format(name="env"))
    from typer.testing import CliRunner

    from ablate.cli import app

    results = str(tmp_path / "results")
    r = CliRunner().invoke(app, ["run", str(path), "--results", results, "--enqueue-only"], one_line_errors=True)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["worker", str(path), "--results", results, "--nproc-per-node", "2"],
                           one_line_errors=True)
    assert r.exit_code == 2 and "rank 1 of 2 was killed by SIGKILL" in r.stderr, r.stderr
    assert run_statuses(tmp_path) == {Status.INTERRUPTED, Status.QUEUED}  # resumable: the next run trains it



# ---- stale work never overwrites fresh work


def test_a_worker_that_lost_its_trial_writes_nothing_more_of_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Paused past its grace period, a worker's attempt is failed by another worker, which trains the trial to the
    end. Resumed, the paused worker checks it still owns the trial before each write: it writes no checkpoint and
    no metrics over the other worker's, and records nothing."""
    from ablate.sweep.epochs import EpochHook
    from ablate.sweep.worker import WorkerOptions, work

    path = tmp_path / "env.yaml"
    path.write_text(TWO_EPOCHS.format(name="env").replace("  - {name: b, set: {kernel_size: 5}}\n", ""))
    loaded = load_study(path)
    led = Ledger(loaded, LedgerOptions(None, tmp_path / "results"))
    led.sync()
    report = EpochHook.__call__
    fresh: dict[str, bytes] = {}

    def taken_over_after_epoch_1(self, row):
        report(self, row)
        (mine,) = self.ledger.store.trials(State.RUNNING)  # another worker fails it (no heartbeat) ...
        self.ledger.store.set_attrs(mine, {"fail_reason": "stopped sending heartbeats", "fail_kind": "died"})
        self.ledger.store.tell(mine, State.FAIL)
        trial_dir = self.ledger.dir / "trials" / self.item.key  # ... and trains it to the end
        for name in ("checkpoint.pt", "metrics.csv"):
            fresh[name] = f"the other worker's final {name}".encode()
            (trial_dir / name).write_bytes(fresh[name])

    monkeypatch.setattr(EpochHook, "__call__", taken_over_after_epoch_1)
    stats = work(loaded, WorkerOptions(ledger=LedgerOptions(None, tmp_path / "results"), progress=False))
    trial_dir = led.dir / "trials" / loaded.variants[0].trial_id(0)
    assert {name: (trial_dir / name).read_bytes() for name in fresh} == fresh  # nothing overwritten
    assert sum(stats.values()) == 0  # and no outcome recorded by the worker that lost it


def test_a_journal_truncated_under_a_running_worker_is_one_line_and_nothing_stays_running(tmp_path: Path) -> None:
    """The journal is cut to nothing while a worker holds a trial: the worker's next read is a one-line
    StorageFault naming the journal (an OSError: exit 2), and a fresh run queues every trial again."""
    from ablate.sweep.storage import StorageFault

    led = open_ledger(tmp_path, None)
    led.sync()
    assert led.pop() is not None
    journal = led.dir / "ledger.journal"
    journal.write_bytes(b"")
    with pytest.raises(StorageFault) as err:
        led.pop()
    assert err.value.filename == str(journal) and "changed under this worker" in str(err.value.strerror)
    again = open_ledger(tmp_path, None)
    assert again.sync()[Status.QUEUED] == 4 and set(statuses(again).values()) == {Status.QUEUED}
