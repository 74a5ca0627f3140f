"""Reading a ledger (mixed into `Ledger`): its trials as ablate sees them (a trial whose worker died reads as
failed, kind `died`), each trial id's latest attempt and history, what is stale (trained on other data),
the code versions, and the study's progress over every worker."""

from __future__ import annotations

import copy
import json
import os
import socket
from typing import TYPE_CHECKING, Any

from .states import FailKind, Status, was_pruned

if TYPE_CHECKING:
    from ablate.config.study import Search
    from ablate.config.variant import LoadedStudy, Variant

STALE_REASON = "stopped sending heartbeats"


class LedgerView:
    """The reading half of `Ledger`."""

    loaded: LoadedStudy
    study: Any  # optuna's Study (None: read-only, and no ledger yet)
    storage: Any
    heartbeat: int | None
    search: Search | None
    sid: int | None
    by_key: dict[str, tuple[Variant, int]]
    data_fp: dict[str, str | None]
    check_data: bool

    def known(self) -> dict[str, tuple[Variant, int]]:
        """The study's (variant, seed) by trial id: its fixed variants, plus those a search has sampled."""
        if self.search is None:
            return self.by_key
        from ablate.config.load import search_variant

        out = dict(self.by_key)
        for t in sorted(self.trials(), key=lambda t: t.number):
            key = t.user_attrs.get("trial_id")
            if key and key not in out and t.params:
                out[key] = (search_variant(self.loaded, dict(t.params), t.number), self.loaded.study.seeds[0])
        return out

    def trials(self) -> list[Any]:
        """All attempts; one failed by a live worker for missing heartbeats reads as fail_kind `died`, and so
        does a running one whose worker process (on this host, journal ledgers) is gone (not written here)."""
        if self.study is None:
            return []
        host, stale = socket.gethostname(), self._stale_ids()
        return [self._as_seen(t, host, stale) for t in self.study.get_trials(deepcopy=False)]

    def _as_seen(self, t: Any, host: str, stale: set[int]) -> Any:
        """One trial as ablate reads it (a copy when it reads otherwise than stored: never the storage's own)."""
        from optuna.trial import TrialState

        who = f"{t.user_attrs.get('host', '?')} pid {t.user_attrs.get('pid', '?')}"
        if t.state == TrialState.FAIL and "fail_kind" not in t.user_attrs:  # failed by optuna's stale check
            reason = f"worker {who} {STALE_REASON}"
        elif t.state == TrialState.RUNNING and not self.heartbeat and _dead_here(t, host):
            reason = f"worker process {t.user_attrs.get('pid')} died"
        elif t.state == TrialState.RUNNING and storage_id(t) in stale:  # its worker stopped sending heartbeats
            reason = f"worker {who} {STALE_REASON}"
        else:
            return t
        t = copy.copy(t)
        t.state = TrialState.FAIL
        t.user_attrs = {**t.user_attrs, "fail_kind": FailKind.DIED.value, "fail_reason": reason}
        return t

    def _stale_ids(self) -> set[int]:
        """RDB storages with heartbeats: the running trials whose heartbeat is older than the grace period
        (read only; a worker fails and retries them)."""
        # optuna has no public reader for this (only `fail_stale_trials`, which writes): its private one, when there
        get = getattr(self.storage, "_get_stale_trial_ids", None) if self.heartbeat else None
        if not callable(get):
            return set()
        try:
            return set(get(self.sid))
        except Exception:  # noqa: BLE001 - unknown: show the trial as running
            return set()

    # ---- stale results: trained on other data than the study names now

    def expect_current_data(self) -> None:
        """From now on, a finished trial whose recorded data fingerprint differs from that of the data its
        variant reads now is `stale` (not done). Data that cannot be read now is not checked."""
        self.check_data = True

    def fingerprint(self, v: Variant) -> str | None:
        """The fingerprint of the data `v` reads (cached per data spec); None when it cannot be read."""
        from ablate.train.sources import DataError, data_fingerprint

        key = json.dumps(v.data.model_dump(mode="json"), sort_keys=True)
        if key not in self.data_fp:
            try:
                self.data_fp[key] = data_fingerprint(v.data)
            except DataError:
                self.data_fp[key] = None
        return self.data_fp[key]

    def is_stale(self, t: Any) -> bool:
        """A finished trial trained on other data than its variant (as the study names it now) reads."""
        from optuna.trial import TrialState

        if not self.check_data or t.state != TrialState.COMPLETE:
            return False
        got = t.user_attrs.get("data_fingerprint")
        known = self.by_key.get(t.user_attrs.get("trial_id"))
        if got is None or known is None:
            return False
        now = self.fingerprint(known[0])
        return now is not None and got != now

    # ---- per trial id

    def versions(self) -> dict[str, int]:
        """Code version -> how many of the study's finished trials it trained (unknown: before versions were
        recorded)."""
        out: dict[str, int] = {}
        keys = self.known()
        for key, t in self.latest().items():
            if key in keys and t.state.name == "COMPLETE":
                v = str(t.user_attrs.get("code_version", "unknown"))
                out[v] = out.get(v, 0) + 1
        return out

    def version_note(self) -> str | None:
        """One line when the study's results come from more than one code version."""
        versions = self.versions()
        if len(versions) < 2:
            return None
        parts = ", ".join(f"{v} ({n} trial{'s' * (n != 1)})" for v, n in sorted(versions.items()))
        return f"note: results come from {len(versions)} code versions: {parts}"

    def history(self) -> dict[str, list[Any]]:
        """Our trial id -> all its attempts (queued and pruned ones too, not skipped duplicates), oldest first."""
        out: dict[str, list[Any]] = {}
        for t in sorted(self.trials(), key=lambda t: t.number):
            key = t.user_attrs.get("trial_id")
            if key and (t.state.name != "PRUNED" or was_pruned(t)):
                out.setdefault(key, []).append(t)
        return out

    def latest(self) -> dict[str, Any]:
        """Our trial id -> its most relevant attempt (complete > running > waiting > the last failure > pruned
        by a search's pruner > a skipped duplicate)."""
        from optuna.trial import TrialState

        rank = {TrialState.COMPLETE: 4, TrialState.RUNNING: 3, TrialState.WAITING: 2, TrialState.FAIL: 1,
                TrialState.PRUNED: 0}
        best: dict[str, Any] = {}

        def score(t: Any) -> tuple[float, int]:  # a stale result ranks below a queued attempt, above a failure
            return (1.5 if self.is_stale(t) else 0.5 if was_pruned(t) else rank[t.state], t.number)

        for t in self.trials():
            key = t.user_attrs.get("trial_id")
            if key is None:
                continue
            old = best.get(key)
            if old is None or score(t) > score(old):
                best[key] = t
        return best

    def attempts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials():
            key = t.user_attrs.get("trial_id")
            if key and t.state.name != "WAITING" and (t.state.name != "PRUNED" or was_pruned(t)):
                out[key] = out.get(key, 0) + 1
        return out

    # ---- the study as a whole

    def progress(self) -> tuple[int, int]:
        """(trials ended, trials the study asks for): the study-level progress, over every worker. Ended: done,
        or (a search) stopped early by its pruner."""
        latest, known = self.latest(), self.known()
        done = sum(1 for key in known if key in latest and Status.of(latest[key], self.is_stale(latest[key]))
                   in (Status.DONE, Status.PRUNED))
        return done, len(known) if self.search is None else max(len(known), self.search.trials)

    def running(self) -> int:
        """How many trials are running (on any worker)."""
        from optuna.trial import TrialState

        if self.study is None:
            return 0
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def storage_id(t: Any) -> int:
    """A trial's id in its storage, which the storage's methods take (heartbeats, claiming a queued trial)."""
    return t._trial_id  # optuna exposes it only under this name, on Trial and FrozenTrial alike


def _dead_here(t: Any, host: str) -> bool:
    """A running trial whose worker process was on this host and is gone."""
    pid = t.user_attrs.get("pid")
    return t.user_attrs.get("host") == host and isinstance(pid, int) and not _alive(pid)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed child not yet reaped by its parent) is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
