"""The ledger's seam to optuna (`ablate.sweep.store`): each name optuna has no public API for is used once, in one
function, and tested here against the installed optuna, so an optuna release that changes one fails here first."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from ablate.sweep import store as S
from ablate.sweep.options import LedgerOptions
from ablate.sweep.states import State


def _study(tmp_path: Path, url: str | None = None, heartbeat: int | None = None) -> S.Store:
    opts = LedgerOptions(url, tmp_path, heartbeat=heartbeat, grace=1)
    return S.Store("s", opts, tmp_path / "s", None)


def test_storage_id_is_the_id_the_storage_methods_take(tmp_path: Path) -> None:
    st = _study(tmp_path)
    for _ in range(3):
        st.enqueue({"k": 1})
    for frozen in st.study.get_trials(deepcopy=False):
        sid = S._storage_id(frozen)
        assert st.storage.get_trial(sid).number == frozen.number
    trial, number, sid = st.ask()
    assert S._storage_id(trial) == sid and st.storage.get_trial(sid).number == number == trial.number


def test_claim_switches_a_queued_trial_once_and_the_handle_writes_to_it(tmp_path: Path) -> None:
    st = _study(tmp_path)
    st.enqueue({"k": 1})
    (queued,) = st.trials(State.WAITING)
    handle = st.claim(queued)
    assert handle is not None and st.claim(queued) is None  # a second claim (another worker) gets nothing
    assert st.state_of(queued.storage_id) is State.RUNNING
    st.set_attrs(handle, {"a": 1})
    assert S._handle(st.study, queued.storage_id).number == queued.number
    st.tell(handle, State.COMPLETE, 2.0)
    (done,) = st.trials()
    assert done.state is State.COMPLETE and done.value == 2.0 and done.user_attrs == {"k": 1, "a": 1}
    with pytest.raises(S.TakenOver):  # finished: no longer ours
        st.tell(handle, State.FAIL)
    with pytest.raises(S.TakenOver):
        st.set_attrs(handle, {"b": 2})


def test_stale_ids_reads_the_trials_whose_heartbeat_stopped(tmp_path: Path) -> None:
    st = _study(tmp_path, f"sqlite:///{tmp_path / 'l.db'}", heartbeat=1)
    assert st.heartbeat == 1
    trial, _, sid = st.ask()
    st.record_heartbeat(sid)
    assert S._stale_ids(st.storage, st.sid) == set()
    time.sleep(2.2)  # past the grace period (1 s)
    assert S._stale_ids(st.storage, st.sid) == {sid} == st.stale_ids()
    assert st.state_of(sid) is State.RUNNING  # read only: nothing failed


def test_attempts_carry_every_state_and_the_journal_backend_keeps_its_path(tmp_path: Path) -> None:
    assert {s.name for s in State} == {s.name for s in optuna.trial.TrialState}
    st = _study(tmp_path)
    assert isinstance(st.storage, optuna.storages.JournalStorage)
    backend = S.safe_journal(tmp_path / "s" / "ledger.journal")
    assert backend.path == tmp_path / "s" / "ledger.journal"
    assert st.trials() == [] and S.heartbeat_interval(st.storage) is None


def test_a_connection_dropped_while_the_study_loads_is_a_storage_fault(tmp_path: Path, monkeypatch) -> None:
    """The database drops the connection just as a store opens its study (a worker's summary after a fault, a
    second worker joining): one-line `StorageFault` (an OSError: exit 2, trial resumable), not optuna's error."""
    from optuna.exceptions import StorageInternalError

    from ablate.sweep.storage import StorageFault

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    _study(tmp_path, url, heartbeat=1)  # the study exists

    def dropped(**_: object) -> None:
        raise StorageInternalError("An exception is raised during the commit.")

    monkeypatch.setattr(S.optuna, "load_study", dropped)
    with pytest.raises(StorageFault, match="the ledger's database failed") as e:
        _study(tmp_path, url, heartbeat=1)
    assert isinstance(e.value, OSError) and "db.sqlite" in str(e.value)
