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
from .record import json_attrs
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


def budget_left(ledger: Ledger) -> int:
    """How many trials the search has still to sample (its budget less those sampled, queued or ended)."""
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
        if budget_left(ledger) <= 0 and not ledger.store.trials(State.WAITING):
            return None
        trial, number, storage_id = ledger.store.ask()
        owner = {"host": socket.gethostname(), "pid": os.getpid()}
        ledger.store.set_attrs(trial, owner)  # at once: counting a sample's cost may take long (`view.owner_gone`)
        v = search_variant(ledger.loaded, ledger.store.suggest(trial, search.space), number)
        queued = ledger.store.attrs_of(trial)  # a queued attempt (a confirmation, an interrupted trial) says its seed
        seed, confirm = int(queued.get("seed", ledger.loaded.study.seeds[0])), bool(queued.get("confirm"))
        if _set_aside(ledger, trial, number, v, seed):
            continue
        attrs = {**ledger.attrs(v, seed), **owner}
        ledger.store.set_attrs(trial, {**attrs, "confirm": True} if confirm else attrs)
        first_heartbeat(ledger, storage_id)
        return Item(number=number, trial_id=storage_id, key=v.trial_id(seed), seed=seed, variant=v, trial=trial,
                    confirm=confirm)
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


def search_counts(trials: list[Attempt]) -> dict[str, int]:
    """Sampled configurations of a bounded search: `accepted` (handed to training) and `rejected` (by the
    cost window, never trained), from the ledger's trials."""
    rejected = sum(1 for t in trials if "rejected" in t.user_attrs)
    accepted = {t.user_attrs["trial_id"] for t in trials if t.user_attrs.get("trial_id")
                and "rejected" not in t.user_attrs and Status.SKIPPED not in t.user_attrs}
    return {"accepted": len(accepted), "rejected": rejected}


def confirm_round(ledger: Ledger) -> int:
    """`search.confirm: k`: once the budget is spent and no trial runs, queue the best k configurations (by the
    objective optuna saw, their mean over `search.seeds`) on every seed of `confirm_seeds` they lack; how many
    trials are queued now (0: nothing to confirm, or done), -1 while a trial still runs. Idempotent: the
    ranking reads the sampled trials only, never the confirmations."""
    search = ledger.search
    if search is None or not search.confirm:
        return 0
    trials = ledger.trials()
    if any(t.state in (State.RUNNING, State.WAITING) for t in trials) or budget_left(ledger) > 0:
        return -1 if any(t.state is State.RUNNING for t in trials) else 0
    sampled = [t for t in trials
               if t.state is State.COMPLETE and not t.user_attrs.get("confirm") and t.value is not None]
    best = sorted(sampled, key=lambda t: -float(t.value))[: search.confirm]  # type: ignore[arg-type]
    have = {t.user_attrs.get("trial_id") for t in trials if t.state is State.COMPLETE}
    queued = 0
    for t in best:
        trained = set(_seed_metrics(t)) or {int(t.user_attrs["seed"])}
        for seed in ledger.loaded.study.first_seeds(search.confirm_seeds):
            key = f"{t.user_attrs['variant_id']}-s{seed}"
            if seed in trained or key in have:
                continue
            ledger.store.enqueue({"seed": seed, "confirm": True, "trial_id": key}, dict(t.params))
            queued += 1
    return queued


def _seed_metrics(t: Attempt) -> dict[int, dict[str, float]]:
    """A multi-seed search trial's per-seed metrics (`seed_metrics`), by seed."""
    import json

    raw = t.user_attrs.get("seed_metrics")
    return {int(k): v for k, v in json.loads(raw).items()} if raw else {}


def search_seeds(ledger: Ledger, item: Item) -> list[int]:
    """The seeds a trial trains: a search's sampled configuration its `search.seeds`, any other trial its own."""
    search = ledger.search
    if search is None or search.seeds == 1 or item.confirm:
        return [item.seed]
    return ledger.loaded.study.first_seeds(search.seeds)


def seed_means(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of every numeric metric, the first seed's other values, and `seed_metrics`: JSON of
    {seed: {metric: value}} (the report's rows, one per seed)."""
    import json

    first = next(iter(per_seed.values()))
    out: dict[str, Any] = {}
    for k, v in first.items():
        values = [m.get(k) for m in per_seed.values()]
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in values)
        out[k] = sum(values) / len(values) if numeric else v
    plain = {str(s): {k: v for k, v in json_attrs(m).items() if isinstance(v, int | float)}
             for s, m in per_seed.items()}
    out["seed_metrics"] = json.dumps(plain, sort_keys=True)
    return out
