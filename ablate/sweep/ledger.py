"""The ledger: one optuna study per ablate study; one optuna trial per attempt at (variant, seed).

optuna does the bookkeeping (storages, atomic WAITING -> RUNNING hand-over, user attributes,
heartbeats on RDB storages); this package only decides *what* to enqueue and how to read it back. `Ledger`
is the one class: it holds a `store.Store` (the only module that talks to optuna; `options.py`, `storage.py`
and `journal.py` say how it is opened) and the study's state, and calls `view.py` (reading), `queue.py`
(queueing, handing out, dead workers) and `search.py` (searches, pruning), which take it explicitly.

Trial user attributes: `trial_id` (`<variant id>-s<seed>`), `variant_id`, `name`, `group`,
`index`, `seed`, `config` (the resolved network/recipe/data as JSON); once running `host`, `pid`;
once finished its record (`record.TrialRecord`: metrics, and the FLOP/param counts of a finished one), or
`fail_reason`, `fail_kind` (`states.FailKind`: `error` | `interrupted` | `died` |
`data` | `io`; all but `error` are resumable: queued again by the next `ablate run`) and `traceback`, or (a
search's pruner stopped it) `pruned` with the reason. Statuses as shown (done, interrupted, stale, pruned,
...): `states.Status`. Provenance, set when a worker takes the trial: `code_version` (ablate's version and git
commit) and `data_fingerprint` (of the data files the trial reads, `ablate.train.data.data_fingerprint`). A
finished trial whose data fingerprint differs from that of the data the study names now is `stale`: not done,
and trained again.

Reading commands (`status`, `report`) open the ledger read-only (`readonly=True`): they append nothing and
create nothing for a study never run. A journal file whose last record is torn (a full disk, a crash
mid-write) is repaired before the next write (a backup is kept); garbage before the last record is a
one-line `LedgerError` naming the file and the line.

One ledger (study name) belongs to one study file: the file's name is recorded in the optuna study's user
attributes; another file with the same `name:` is refused. A worker only takes queued trials of its own
study file version and leaves the others alone (another version of the study may be running).

Dead workers: on a local journal file, a RUNNING trial whose worker process (same host) is gone is failed
with kind `died` (`reap_dead_local_workers`). On RDB storages (PostgreSQL, ...) workers record heartbeats
while they train (`heartbeat.py`); before taking work every worker fails the trials whose heartbeat is
older than the grace period (`fail_stale`), and optuna's retry callback queues each again (same user
attributes, so same trial id and checkpoint folder) up to `max_retry` times. optuna cannot annotate a
finished trial, so such an attempt carries no `fail_reason`: `trials()` fills in kind `died` and
"worker ... stopped sending heartbeats".
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ablate
from ablate.config.errors import StudyError
from ablate.config.variant import LoadedStudy, Variant
from ablate.secrets import safe_url

from . import queue, rounds, search, view
from .options import LedgerOptions
from .params import param_space
from .record import TrialRecord
from .states import Attempt, FailKind, Item, State, Status
from .store import Store


@functools.cache
def code_version() -> str:
    """ablate's version, plus `+g<commit>` (and `.dirty` when ablate/ has uncommitted changes) in a git checkout."""
    here = Path(__file__).resolve().parents[1]
    try:
        def git(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)

        head = git("rev-parse", "--short=10", "HEAD")
        if head.returncode != 0:
            return ablate.__version__
        dirty = git("diff", "--quiet", "HEAD", "--", ".").returncode == 1
        return f"{ablate.__version__}+g{head.stdout.strip()}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return ablate.__version__


def variant_config(v: Variant) -> dict[str, Any]:
    return {
        "net": v.train_net.canonical() if v.train_net else None,
        "net_paper": v.net.canonical() if v.net else None,
        "timm": v.timm,
        "recipe": v.recipe.model_dump(mode="json"),
        "data": v.data.model_dump(mode="json"),
    }


class Ledger:
    """`Ledger(loaded, LedgerOptions(...))`: the study's trials in its optuna storage (default options:
    results/<study>/ledger.journal)."""

    def __init__(self, loaded: LoadedStudy, options: LedgerOptions | None = None):
        self.options = options if options is not None else LedgerOptions()
        self.loaded = loaded
        self.dir = self.options.study_dir(loaded.name)
        self.readonly = self.options.readonly
        self.where = safe_url(self.options.storage) or str(self.dir / "ledger.journal")
        s = loaded.study.search
        self.search = s if s is not None and s.sampler != "grid" else None
        self.store = Store(loaded.name, self.options, self.dir, self.search, self._lock)
        self.heartbeat = self.store.heartbeat
        with contextlib.nullcontext() if self.readonly or not self.exists else self._lock():
            self._check_owner()
        self.by_key = {v.trial_id(s): (v, s) for v in loaded.variants for s in loaded.study.seeds}
        self.fixed = dict(self.by_key)  # the study's own (variant, seed)s, before any round adds seeds
        self.rounds: dict[str, tuple[int, str]] = {}  # trial id -> (round, why) of the seeds the plan added
        self.data_fp: dict[str, str | None] = {}  # data spec (JSON) -> fingerprint of the data it reads now
        self.param_space = param_space(loaded)  # optuna params of fixed-variant studies (`params.py`)
        self.param_ok: dict[str, bool] = {}  # param name -> the ledger's earlier trials accept its distribution
        self.check_data = False  # `expect_current_data()`: finished trials on other data count as stale

    @property
    def exists(self) -> bool:
        """False when opened read-only and never run (nothing to read)."""
        return self.store.study is not None

    def _check_owner(self) -> None:
        """One study name, one study file: refuse another file whose `name:` is already taken in this ledger. The
        file is known by its full path on its host (two folders may hold files of one basename); from another host
        (a shared server) only its basename can be compared. A recorded file that no longer exists was moved: the
        ledger follows it."""
        if not self.exists:
            return
        mine, host = str(Path(self.loaded.file).resolve()), socket.gethostname()
        owner, owner_host = self.store.study_attr("study_file"), self.store.study_attr("study_host")
        same_host = owner_host == host
        moved = owner is not None and same_host and not Path(owner).is_file()
        if owner is None or moved or (owner_host is None and owner == Path(mine).name):  # new, moved, or an
            if not self.readonly:  # older ledger that recorded the basename only: record the full path
                self.store.set_study_attr("study_file", mine)
                self.store.set_study_attr("study_host", host)
            return
        if owner != mine if same_host else Path(owner).name != Path(mine).name:
            raise StudyError(self.loaded.file, "name", f"'{self.loaded.name}' is already the name of the study in "
                             f"{owner} (ledger {self.where}); give this study another name: (or use another "
                             "--results/--storage)")

    def attrs(self, v: Variant, seed: int) -> dict[str, Any]:
        """The user attributes a (variant, seed) is queued with."""
        return {"trial_id": v.trial_id(seed), "variant_id": v.id, "name": v.name, "group": v.group or "",
                "index": v.index, "seed": seed, "config": json.dumps(variant_config(v), sort_keys=True)}

    # ---- reading (view.py)

    def trials(self) -> list[Attempt]:
        """All attempts, as ablate reads them (`view.as_seen`: a dead worker's trial reads as failed, `died`)."""
        return view.as_seen(self.store.trials(), self.heartbeat, self.store.stale_ids())

    def latest(self) -> dict[str, Attempt]:
        """Our trial id -> its most relevant attempt."""
        return view.latest(self.trials(), self.is_stale)

    def history(self) -> dict[str, list[Attempt]]:
        """Our trial id -> all its attempts (queued and pruned ones too, not skipped duplicates), oldest first."""
        return view.history(self.trials())

    def attempts(self) -> dict[str, int]:
        return view.attempts(self.trials())

    def known(self) -> dict[str, tuple[Variant, int]]:
        """The study's (variant, seed) by trial id: its fixed variants (with the seeds the adaptive rule has added
        so far), plus those a search has sampled."""
        if self.search is None:
            if rounds.adaptive(self) and self.exists:
                latest = self.latest()
                if not rounds.round_open(self, latest):  # a round still training: the plan it ends stays open
                    self.extend(latest)
            return self.by_key
        from ablate.config.load import search_variant

        out = dict(self.by_key)
        for t in sorted(self.trials(), key=lambda t: t.number):
            key = t.user_attrs.get("trial_id")
            if key and key not in out and t.params:
                seed = int(t.user_attrs.get("seed", self.loaded.study.seeds[0]))
                out[key] = (search_variant(self.loaded, dict(t.params), t.number), seed)
        return out

    def version_note(self) -> str | None:
        """One line when the study's results come from more than one code version."""
        return view.version_note(view.versions(self.latest(), self.known()))

    def progress(self) -> tuple[int, int]:
        """(trials ended, trials the study asks for): the study-level progress, over every worker. Ended: done,
        or (a search) stopped early by its pruner."""
        latest, known = self.latest(), self.known()
        done = sum(1 for key in known if key in latest and Status.of(latest[key], self.is_stale(latest[key]))
                   in (Status.DONE, Status.PRUNED))
        return done, len(known) if self.search is None else max(len(known), self.search.trials)

    def failed(self) -> int:
        """How many of the study's trials failed by their own fault (a run trains them only with --retry-failed)."""
        latest, known = self.latest(), self.known()
        return sum(1 for key in known if key in latest and Status.of(latest[key]) is Status.FAILED)

    def waiting(self) -> int:
        """How many of the study's trials are queued, by any run, and still to be trained."""
        known = self.known()
        return sum(1 for key, t in self.latest().items() if key in known and t.state is State.WAITING)

    def running(self) -> int:
        """How many trials are running (on any worker)."""
        return len(self.store.trials(State.RUNNING))

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

    def is_stale(self, t: Attempt) -> bool:
        """A finished trial trained on other data than its variant (as the study names it now) reads."""
        if not self.check_data or t.state is not State.COMPLETE:
            return False
        got = t.user_attrs.get("data_fingerprint")
        known = self.by_key.get(t.user_attrs.get("trial_id"))
        if got is None or known is None:
            return False
        now = self.fingerprint(known[0])
        return now is not None and got != now

    # ---- queueing and handing out (queue.py, search.py)

    def sync(self, retry_failed: bool = False) -> dict[str, int]:
        """Queue every (variant, seed) of the study that is not complete, running or queued.
        Failures that are not the trial's own fault (`FailKind.resumable`: interrupted, worker died, data
        unreadable, disk/file system) are queued again; failures by their own fault only with `retry_failed`.
        Returns how many were queued (key `Status.QUEUED`) and how many are done (`Status.DONE`)."""
        self.fail_stale()
        self.reap_dead_local_workers()
        with self._lock():
            latest = self.latest()
            if self.search is not None:
                return search.sync_search(self, latest, retry_failed)
            if rounds.adaptive(self) and not rounds.round_open(self, latest):
                self.extend(latest)  # a re-run continues the plan: the rounds its finished trials call for
            return queue.sync_variants(self, latest, retry_failed)

    def extend(self, latest: dict[str, Attempt]) -> None:
        """The study's trials: its own, plus those the adaptive rule's plan holds for the finished trials `latest`
        (`rounds.py`; a plan reads whole looks only, so it grows as rounds end and never takes a trial back)."""
        self.by_key, self.rounds = dict(self.fixed), {}
        for key, (v, seed, k, why) in rounds.planned(self, latest).items():
            self.by_key[key] = (v, seed)
            self.rounds[key] = (k, why)

    def next_round(self) -> int:
        """Queue the next round of the adaptive rule once the current one is whole: how many of its trials are
        queued now (0: the plan is complete), or -1 while a trial of the study is still queued or running.
        (Another worker or a re-run may have queued the round already: those trials count too.)"""
        if self.search is not None:
            with self._lock():
                return search.confirm_round(self)
        if not rounds.adaptive(self):
            return 0
        self.fail_stale()
        self.reap_dead_local_workers()
        with self._lock():
            latest = self.latest()
            if rounds.round_open(self, latest):
                return -1
            self.extend(latest)
            queued = queue.sync_variants(self, latest, retry_failed=False)[Status.QUEUED]
            return queued + sum(1 for k, t in latest.items() if k in self.by_key and t.state is State.WAITING)

    def pop(self) -> Item | None:
        """Take the next queued trial of this study file (a search: the next sampled one); None when none is left."""
        return search.ask(self) if self.search is not None else queue.pop(self)

    def fail_stale(self) -> None:
        """RDB storages with heartbeats: fail the running trials whose worker sent no heartbeat within the
        grace period; the storage's retry callback queues each again."""
        self.store.fail_stale()

    def reap_dead_local_workers(self) -> int:
        return queue.reap_dead_local_workers(self)

    def prune_reason(self, item: Item, epoch: int) -> str | None:
        return search.prune_reason(self, item, epoch)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise enqueueing between local processes (two `ablate run` at once queue nothing twice)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".enqueue.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- while a trial trains

    def provenance(self, item: Item, data_fingerprint: str | None) -> None:
        """Record on a trial being trained which code trains it, on which data."""
        self.store.set_attrs(self._trial(item), {"code_version": code_version()})
        if data_fingerprint is not None:
            self.store.set_attrs(self._trial(item), {"data_fingerprint": data_fingerprint})

    def owns(self, item: Item) -> bool:
        """Whether `item`'s attempt is still running, and so this worker's: one failed by another worker (for
        missing heartbeats, or as abandoned) and retried there is no longer ours to write anything of."""
        return self.store.state_of(item.trial_id) is State.RUNNING

    def report(self, item: Item, rows: list[dict[str, Any]]) -> None:
        """The learning curve: each epoch's objective (top-1 unless a search maximises another metric) as the
        trial's intermediate value at step `epoch` (optuna's `Trial.report`); epochs already reported and
        epochs without the metric are skipped. A trial no longer ours (failed by another worker) is left."""
        trial = self._trial(item)
        for row in rows:
            value, epoch = row.get(self._objective()), row.get("epoch")
            if value is None or epoch is None or int(epoch) in item.reported or value != value:
                continue
            self.store.report(trial, float(value), int(epoch))
            item.reported.add(int(epoch))

    # ---- the outcome (optuna's Study.tell); `store.TakenOver` when the trial is no longer ours

    def complete(self, item: Item, record: TrialRecord) -> None:
        """The trial's record as user attributes, and the objective as the trial's value."""
        self.store.set_attrs(self._trial(item), record.attrs())
        value = getattr(record, self._objective())
        value = float(value) if value is not None else 0.0
        self.store.tell(self._trial(item), State.COMPLETE, value if math.isfinite(value) else 0.0)

    def fail(self, item: Item, reason: str, kind: FailKind | str = FailKind.ERROR, traceback: str | None = None,
             record: TrialRecord | None = None) -> None:
        attrs = {**(record.attrs() if record else {}), "fail_reason": reason, "fail_kind": FailKind(kind).value}
        self.store.set_attrs(self._trial(item), {**attrs, **({"traceback": traceback} if traceback else {})})
        self.store.tell(self._trial(item), State.FAIL)

    def prune(self, item: Item, reason: str, record: TrialRecord | None = None) -> None:
        """A search trial stopped by the pruner (`prune_reason`): PRUNED, the reason as user attribute `pruned`
        (optuna makes its last intermediate value the trial's value)."""
        self.store.set_attrs(self._trial(item), {**(record.attrs() if record else {}), Status.PRUNED.value: reason})
        self.store.tell(self._trial(item), State.PRUNED)

    def _objective(self) -> str:
        return self.search.objective if self.search is not None else "top1"

    def _trial(self, item: Item) -> Any:
        if item.trial is None:  # an Item made by hand: the handle of the trial it names (ours, running)
            item.trial = self.store.handle(item.trial_id)
        return item.trial
