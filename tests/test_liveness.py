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
