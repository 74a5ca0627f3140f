"""A `search:` study on the ledger (mixed into `Ledger`): optuna's sampler proposes each trial as a worker
asks for one (`Study.ask`), within the study's budget of `trials`; a configuration outside the cost window
(`flops`/`params`) or already trained is set aside and the sampler asks again. With `pruner:` an optuna
pruner (median, successive halving, hyperband) stops a trial whose learning curve falls behind: the trial
ends PRUNED, its reason in the user attribute `pruned`. Fixed-variant studies (ablations, grid searches)
never prune: every variant must finish."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from .states import Status, resumable, was_pruned
from .view import storage_id

if TYPE_CHECKING:
    from ablate.config.variant import Variant

    from .ledger import Item

PRUNERS = {"median": "median", "successive_halving": "successive halving", "hyperband": "hyperband"}  # -> label


def make_sampler(search: Any) -> Any:
    """optuna's sampler of a search (None: a study of fixed variants, optuna's default sampler unused)."""
    import optuna

    if search is None:
        return None
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=search.seed)
    return optuna.samplers.RandomSampler(seed=search.seed)


def make_pruner(search: Any) -> Any:
    """optuna's pruner for a search's `pruner:` (its defaults); NopPruner for `none` and for every study of
    fixed variants (optuna's own default, a MedianPruner, would otherwise judge their learning curves)."""
    import optuna

    name = getattr(search, "pruner", "none") if search is not None else "none"
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


class LedgerSearch:
    """The search half of `Ledger`."""

    def _sync_search(self, latest: dict[str, Any], retry_failed: bool) -> dict[str, int]:
        """A search samples new trials as it runs; here only interrupted (or, asked, failed) ones are queued
        again, with their sampled parameters fixed. Trials stopped by the pruner are not."""
        from optuna.trial import TrialState

        queued = done = 0
        known = self.known()
        for key, t in latest.items():
            if t.state == TrialState.COMPLETE and not self.is_stale(t):
                done += 1
            elif t.state == TrialState.FAIL and key in known and (
                    resumable(t.user_attrs.get("fail_kind")) or retry_failed):
                v, seed = known[key]
                self.study.enqueue_trial(dict(t.params), user_attrs=self._attrs(v, seed))
                queued += 1
        return {Status.QUEUED: queued, Status.DONE: done}

    def _search_budget_left(self) -> int:
        from optuna.trial import TrialState

        used = set()
        for key, t in self.latest().items():
            if t.state != TrialState.FAIL or not resumable(t.user_attrs.get("fail_kind")):
                used.add(key)
        return self.search.trials - len(used) if self.search is not None else 0

    def _ask(self) -> Item | None:
        """Next search trial: a queued (interrupted) one first, else a new sample from optuna's sampler."""
        from optuna.trial import TrialState

        from ablate.config.load import search_variant
        from ablate.measure.bounds import MAX_REJECTED

        from .ledger import Item

        assert self.search is not None
        # a sampler may propose a configuration already trained, or (bounded search) outside the cost window: ask again
        for _ in range(20 + (MAX_REJECTED if self.search.bounded else 0)):
            if self._search_budget_left() <= 0 and not self.study.get_trials(deepcopy=False,
                                                                             states=(TrialState.WAITING,)):
                return None
            trial = self.study.ask()
            v = search_variant(self.loaded, self._suggest(trial), trial.number)
            seed = self.loaded.study.seeds[0]
            if self._set_aside(trial, v, seed):
                continue
            for k, value in {**self._attrs(v, seed), "host": socket.gethostname(), "pid": os.getpid()}.items():
                trial.set_user_attr(k, value)
            tid = storage_id(trial)
            self._first_heartbeat(tid)
            return Item(number=trial.number, trial_id=tid, key=v.trial_id(seed), seed=seed, variant=v, trial=trial)
        return None

    def _suggest(self, trial: Any) -> dict[str, Any]:
        """The sampled value of every dimension of the search space (fixed ones when the trial was queued)."""
        from ablate.config.study import Range

        params: dict[str, Any] = {}
        for key, dim in self.search.space.items():
            if isinstance(dim, Range) and dim.is_int:
                params[key] = trial.suggest_int(key, int(dim.low), int(dim.high), step=int(dim.step or 1))
            elif isinstance(dim, Range):
                params[key] = trial.suggest_float(key, dim.low, dim.high, step=dim.step, log=dim.log)
            else:
                params[key] = trial.suggest_categorical(key, dim)
        return params

    def _set_aside(self, trial: Any, v: Variant, seed: int) -> bool:
        """A sampled configuration that is not trained: outside the cost window (counted, cached; no trial id:
        no budget used), or trained (or pruned) already. It ends PRUNED, with the reason as a user attribute."""
        from optuna.trial import TrialState

        from ablate.measure.bounds import out_of_bounds

        rejected = out_of_bounds(self.loaded, v)
        if rejected:
            trial.set_user_attr("rejected", rejected)
            trial.set_user_attr("name", v.name)
        else:
            why = self._trained_elsewhere(v.trial_id(seed), trial.number)
            if why is None:
                return False
            trial.set_user_attr("trial_id", v.trial_id(seed))
            trial.set_user_attr(Status.SKIPPED.value, why)
        self.study.tell(trial, state=TrialState.PRUNED)
        return True

    def _trained_elsewhere(self, key: str, number: int) -> str | None:
        """Why a newly sampled configuration is not trained (None: it is): another attempt of it is complete,
        running and older, or was stopped by the pruner."""
        from optuna.trial import TrialState

        for t in self.trials():
            if t.user_attrs.get("trial_id") != key or t.number == number:
                continue
            if (t.state == TrialState.COMPLETE and not self.is_stale(t)) or (
                    t.state == TrialState.RUNNING and t.number < number):
                return "configuration already trained"
            if was_pruned(t):
                return f"configuration already {t.user_attrs[Status.PRUNED.value]}"
        return None

    # ---- pruning

    def prune_reason(self, item: Item, epoch: int) -> str | None:
        """After epoch `epoch` of a search trial was reported (`report`): why the search's pruner stops the
        trial here (None: it goes on). Never after the last epoch (nothing left to save) nor in a study of
        fixed variants."""
        if self.search is None or self.search.pruner not in PRUNERS or item.trial is None:
            return None
        if epoch not in item.reported or epoch >= item.variant.recipe.epochs:
            return None
        if not item.trial.should_prune():
            return None
        return f"pruned at epoch {epoch} by the {PRUNERS[self.search.pruner]} pruner"
