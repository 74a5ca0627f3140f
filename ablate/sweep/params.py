"""What optuna (and optuna-dashboard) users expect on a trial: `params` and a learning curve.

params: a study of fixed variants (steps, variants, grid) records on every trial the value of each field
that some variant of the study changes (the union of their `Variant.changes` keys: network fields,
`recipe.*`, `data.*`), so a trial's params hold its own changes (new values) and the dashboard can plot and
rank the fields the study varies over all its trials. Each field's distribution spans what the study file
gives it (`store.distribution`): numbers a range from the smallest to the largest value, anything else the
categorical of its values in study order; lists (`depths`, `dims`) are JSON text
(`"[3, 3, 9, 3]"`). A search study's params are its sampled dimensions (optuna's `suggest_*`), left alone.

The learning curve: the objective (top-1 unless a search maximises another metric) of every epoch, reported
with optuna's `Trial.report(value, epoch)` as the epoch finishes (a resumed attempt reports the epochs of
its checkpoint first).

The variant id stays the key (user attribute `trial_id`): params are a view for optuna's tools, never read
back by ablate.
"""

from __future__ import annotations

import json
from typing import Any

from ablate.config.variant import LoadedStudy, Variant

from .store import distribution


def param_value(value: Any) -> Any:
    """A value optuna can hold as a categorical choice: None, bool, int, float, str (lists as JSON text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def param_space(loaded: LoadedStudy) -> dict[str, Any]:
    """Field -> optuna distribution, for every field some variant of the study changes (empty for a search,
    whose params are sampled)."""
    if loaded.study.search is not None and loaded.study.search.sampler != "grid":
        return {}
    fields = list(dict.fromkeys(k for v in loaded.variants for k in (v.changes or {})))
    resolved = [v.resolved() for v in loaded.variants]
    return {field: distribution([param_value(r.get(field)) for r in resolved]) for field in fields}


def variant_params(v: Variant, space: dict[str, Any]) -> dict[str, Any]:
    """The variant's value of every field of the study's param space."""
    resolved = v.resolved()
    return {field: param_value(resolved.get(field)) for field in space}
