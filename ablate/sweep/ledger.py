"""The ledger: one optuna study per ablate study; one optuna trial per attempt at (variant, seed).

optuna does the bookkeeping (storages, atomic WAITING -> RUNNING hand-over, user attributes,
heartbeats on RDB storages); this package only decides *what* to enqueue and how to read it back:
`options.py` (how a ledger is opened: `LedgerOptions`), `storage.py` and `journal.py` (the storage),
`view.py` (reading), `queue.py` (queueing, handing out, dead workers), `search.py` (searches, pruning), and
here the `Ledger` that joins them and records each trial's outcome with optuna's `Study.tell`.

Trial user attributes: `trial_id` (`<variant id>-s<seed>`), `variant_id`, `name`, `group`,
`index`, `seed`, `config` (the resolved network/recipe/data as JSON); once running `host`, `pid`;
once finished the metrics, or `fail_reason`, `fail_kind` (`states.FailKind`: `error` | `interrupted` | `died` |
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
import functools
import json
import math
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ablate
from ablate.config.errors import StudyError
from ablate.config.variant import LoadedStudy, Variant

from .journal import safe_journal  # noqa: F401 - re-exported
from .options import DEFAULT_HEARTBEAT, DEFAULT_MAX_RETRY, LedgerError, LedgerOptions  # noqa: F401 - re-exported
from .params import param_space
from .queue import LedgerQueue
from .search import LedgerSearch, make_pruner, make_sampler
from .states import FailKind, Status
from .storage import heartbeat_interval, is_rdb_url, open_storage, rdb_url, safe_url  # noqa: F401 - re-exported
from .view import STALE_REASON, LedgerView, _alive, _dead_here  # noqa: F401 - re-exported


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


@dataclass
class Item:
    """A trial handed to a worker."""

    number: int  # optuna trial number
    trial_id: int  # the storage's id of the trial (heartbeats take it)
    key: str  # our trial id: <variant id>-s<seed>
    seed: int
    variant: Variant
    trial: Any = field(default=None, repr=False)  # optuna's Trial, ours since the claim (`pop`) or `ask`
    reported: set[int] = field(default_factory=set, repr=False)  # epochs of the learning curve reported


class Ledger(LedgerView, LedgerQueue, LedgerSearch):
    """`Ledger(loaded, LedgerOptions(...))`: the study's trials in its optuna storage (default options:
    results/<study>/ledger.journal)."""

    def __init__(self, loaded: LoadedStudy, options: LedgerOptions | None = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # search choices that are lists (dims, depths) are stored as JSON in every optuna storage: no need to warn
        warnings.filterwarnings("ignore", message="Choices for a categorical distribution", category=UserWarning)
        self.options = options if options is not None else LedgerOptions()
        self.loaded = loaded
        self.dir = self.options.study_dir(loaded.name)
        self.storage_url = self.options.storage
        self.readonly = self.options.readonly
        self.where = safe_url(self.storage_url) or str(self.dir / "ledger.journal")
        self.storage = open_storage(self.options, self.dir)
        self.heartbeat = heartbeat_interval(self.storage) if self.storage is not None else None
        search = loaded.study.search
        self.search = search if search is not None and search.sampler != "grid" else None
        self.study = self._open_study()
        self.sid = self.storage.get_study_id_from_name(loaded.name) if self.study is not None else None
        with contextlib.nullcontext() if self.readonly or self.study is None else self._lock():
            self._check_owner()
        self.by_key = {v.trial_id(s): (v, s) for v in loaded.variants for s in loaded.study.seeds}
        self.data_fp: dict[str, str | None] = {}  # data spec (JSON) -> fingerprint of the data it reads now
        self.param_space = param_space(loaded)  # optuna params of fixed-variant studies (`params.py`)
        self._param_ok: dict[str, bool] = {}  # param name -> the ledger's earlier trials accept its distribution
        self.check_data = False  # `expect_current_data()`: finished trials on other data count as stale

    def _open_study(self) -> Any:
        """The optuna study (None: read-only and never run), with the search's sampler and pruner (optuna's
        samplers; grid searches are expanded and enqueued like `grid:`, and never prune)."""
        import optuna

        if self.storage is None:
            return None
        kwargs = {"study_name": self.loaded.name, "storage": self.storage, "sampler": make_sampler(self.search),
                  "pruner": make_pruner(self.search)}
        try:  # load first: optuna's create_study appends a record to a journal even when the study exists
            return optuna.load_study(**kwargs)
        except KeyError:
            if self.readonly:
                return None
            with self._lock():
                return optuna.create_study(**kwargs, direction="maximize", load_if_exists=True)

    def _check_owner(self) -> None:
        """One study name, one study file: refuse another file whose `name:` is already taken in this ledger."""
        if self.study is None:
            return
        mine = Path(self.loaded.file).name
        owner = self.study.user_attrs.get("study_file")
        if owner is None:
            if not self.readonly:
                self.study.set_user_attr("study_file", mine)
            return
        if owner != mine:
            raise StudyError(self.loaded.file, "name", f"'{self.loaded.name}' is already the name of the study in "
                             f"{owner} (ledger {self.where}); give this study another name: (or use another "
                             "--results/--storage)")

    def _attrs(self, v: Variant, seed: int) -> dict[str, Any]:
        return {"trial_id": v.trial_id(seed), "variant_id": v.id, "name": v.name, "group": v.group or "",
                "index": v.index, "seed": seed, "config": json.dumps(variant_config(v), sort_keys=True)}

    # ---- while a trial trains

    def provenance(self, item: Item, data_fingerprint: str | None) -> None:
        """Record on a trial being trained which code trains it, on which data."""
        self._set_attrs(item, {"code_version": code_version()})
        if data_fingerprint is not None:
            self._set_attrs(item, {"data_fingerprint": data_fingerprint})

    def report(self, item: Item, rows: list[dict[str, Any]]) -> None:
        """The learning curve: each epoch's objective (top-1 unless a search maximises another metric) as the
        trial's intermediate value at step `epoch` (optuna's `Trial.report`); epochs already reported and
        epochs without the metric are skipped. A trial no longer ours (failed by another worker) is left."""
        from optuna.exceptions import UpdateFinishedTrialError

        trial = self._trial(item)
        for row in rows:
            value, epoch = row.get(self._objective()), row.get("epoch")
            if value is None or epoch is None or int(epoch) in item.reported or value != value:
                continue
            with contextlib.suppress(UpdateFinishedTrialError):
                trial.report(float(value), int(epoch))
            item.reported.add(int(epoch))

    # ---- the outcome (optuna's Study.tell)

    def complete(self, item: Item, metrics: dict[str, Any]) -> None:
        """The metrics as user attributes, and the objective as the trial's value."""
        from optuna.trial import TrialState

        self._set_attrs(item, metrics)
        value = metrics.get(self._objective())
        value = float(value) if value is not None else 0.0
        self._tell(item, TrialState.COMPLETE, value if math.isfinite(value) else 0.0)

    def fail(self, item: Item, reason: str, kind: FailKind | str = FailKind.ERROR, traceback: str | None = None,
             metrics: dict[str, Any] | None = None) -> None:
        from optuna.trial import TrialState

        attrs = {**(metrics or {}), "fail_reason": reason, "fail_kind": FailKind(kind).value}
        self._set_attrs(item, {**attrs, **({"traceback": traceback} if traceback else {})})
        self._tell(item, TrialState.FAIL)

    def prune(self, item: Item, reason: str, metrics: dict[str, Any] | None = None) -> None:
        """A search trial stopped by the pruner (`prune_reason`): PRUNED, the reason as user attribute `pruned`
        (optuna makes its last intermediate value the trial's value)."""
        from optuna.trial import TrialState

        self._set_attrs(item, {**(metrics or {}), Status.PRUNED.value: reason})
        self._tell(item, TrialState.PRUNED)

    def _objective(self) -> str:
        return self.search.objective if self.search is not None else "top1"

    def _trial(self, item: Item) -> Any:
        import optuna

        if item.trial is None:  # an Item made by hand: the Trial of the trial it names (ours, running)
            item.trial = optuna.trial.Trial(self.study, item.trial_id)
        return item.trial

    def _set_attrs(self, item: Item, attrs: dict[str, Any]) -> None:
        trial = self._trial(item)
        for k, value in attrs.items():
            trial.set_user_attr(k, value)

    def _tell(self, item: Item, state: Any, value: float | None = None) -> None:
        """Finish the trial with optuna's `Study.tell` (its sampler sees the outcome). A trial already finished
        (another worker failed it for missing heartbeats and retries it) raises optuna's
        UpdateFinishedTrialError, as the storage does when that happens between tell's read and its write:
        the worker drops this attempt's outcome."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.study.tell(self._trial(item), value, state=state)
        except ValueError:  # tell's "Cannot tell a FAIL trial": finished before tell read it
            if self.storage.get_trial(item.trial_id).state.is_finished():
                raise UpdateFinishedTrialError(f"trial {item.number} ({item.key}) is already finished") from None
            raise
