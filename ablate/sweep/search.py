"""A `search:` study on the ledger (`Ledger` calls these): optuna's sampler proposes each trial as a worker
asks for one (`Store.ask`), within the study's budget of `trials`; a configuration outside the cost window
(`flops`/`params`) or already trained is set aside and the sampler asks again. With `pruner:` an optuna
pruner (median, successive halving, hyperband) stops a trial whose learning curve falls behind: the trial
ends PRUNED, its reason in the user attribute `pruned`. Fixed-variant studies (ablations, grid searches)
never prune: every variant must finish."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from .queue import first_heartbeat
from .states import Attempt, Item, State, Status, resumable, was_pruned

if TYPE_CHECKING:
    from ablate.config.variant import Variant

    from .ledger import Ledger

PRUNERS = {"median": "median", "successive_halving": "successive halving", "hyperband": "hyperband"}  # -> label


def sync_search(ledger: Ledger, latest: dict[str, Attempt], retry_failed: bool) -> dict[str, int]:
    """A search samples new trials as it runs; here only interrupted (or, asked, failed) ones are queued
    again, with their sampled parameters fixed. Trials stopped by the pruner are not."""
    queued = done = 0
    known = ledger.known()
    for key, t in latest.items():
        if t.state is State.COMPLETE and not ledger.is_stale(t):
            done += 1
        elif t.state is State.FAIL and key in known and (resumable(t.user_attrs.get("fail_kind")) or retry_failed):
            v, seed = known[key]
            ledger.store.enqueue(ledger.attrs(v, seed), dict(t.params))
            queued += 1
    return {Status.QUEUED: queued, Status.DONE: done}


def _budget_left(ledger: Ledger) -> int:
    used = set()
    for key, t in ledger.latest().items():
        if t.state is not State.FAIL or not resumable(t.user_attrs.get("fail_kind")):
            used.add(key)
    return ledger.search.trials - len(used) if ledger.search is not None else 0


def ask(ledger: Ledger) -> Item | None:
    """Next search trial: a queued (interrupted) one first, else a new sample from optuna's sampler."""
    from ablate.config.load import search_variant
    from ablate.measure.bounds import MAX_REJECTED

    search = ledger.search
    if search is None:
        return None
    # a sampler may propose a configuration already trained, or (bounded search) outside the cost window: ask again
    for _ in range(20 + (MAX_REJECTED if search.bounded else 0)):
        if _budget_left(ledger) <= 0 and not ledger.store.trials(State.WAITING):
            return None
        trial, number, storage_id = ledger.store.ask()
        v = search_variant(ledger.loaded, ledger.store.suggest(trial, search.space), number)
        seed = ledger.loaded.study.seeds[0]
        if _set_aside(ledger, trial, number, v, seed):
            continue
        ledger.store.set_attrs(trial, {**ledger.attrs(v, seed), "host": socket.gethostname(), "pid": os.getpid()})
        first_heartbeat(ledger, storage_id)
        return Item(number=number, trial_id=storage_id, key=v.trial_id(seed), seed=seed, variant=v, trial=trial)
    return None


def _set_aside(ledger: Ledger, trial: Any, number: int, v: Variant, seed: int) -> bool:
    """A sampled configuration that is not trained: outside the cost window (counted, cached; no trial id:
    no budget used), or trained (or pruned) already. It ends PRUNED, with the reason as a user attribute."""
    from ablate.measure.bounds import out_of_bounds

    rejected = out_of_bounds(ledger.loaded, v)
    if rejected:
        ledger.store.set_attrs(trial, {"rejected": rejected, "name": v.name})
    else:
        why = _trained_elsewhere(ledger, v.trial_id(seed), number)
        if why is None:
            return False
        ledger.store.set_attrs(trial, {"trial_id": v.trial_id(seed), Status.SKIPPED.value: why})
    ledger.store.tell(trial, State.PRUNED)
    return True


def _trained_elsewhere(ledger: Ledger, key: str, number: int) -> str | None:
    """Why a newly sampled configuration is not trained (None: it is): another attempt of it is complete,
    running and older, or was stopped by the pruner."""
    for t in ledger.trials():
        if t.user_attrs.get("trial_id") != key or t.number == number:
            continue
        if (t.state is State.COMPLETE and not ledger.is_stale(t)) or (t.state is State.RUNNING and t.number < number):
            return "configuration already trained"
        if was_pruned(t):
            return f"configuration already {t.user_attrs[Status.PRUNED.value]}"
    return None


def prune_reason(ledger: Ledger, item: Item, epoch: int) -> str | None:
    """After epoch `epoch` of a search trial was reported (`Ledger.report`): why the search's pruner stops the
    trial here (None: it goes on). Never after the last epoch (nothing left to save) nor in a study of fixed
    variants."""
    if ledger.search is None or ledger.search.pruner not in PRUNERS or item.trial is None:
        return None
    if epoch not in item.reported or epoch >= item.variant.recipe.epochs:
        return None
    if not ledger.store.should_prune(item.trial):
        return None
    return f"pruned at epoch {epoch} by the {PRUNERS[ledger.search.pruner]} pruner"
