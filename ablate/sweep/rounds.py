"""Seeds where the verdict is open (`evidence.max_seeds`): the rounds of the adaptive rule, in the ledger.

The plan is a pure function of the ledger's finished trials (ablate.evidence.plan replays the study's looks):
every worker, a re-run, `status` and the report compute the same one, and queueing it is idempotent by trial
id, so workers on a shared storage, a resumed run and PostgreSQL all continue the same plan. A round is
planned only once no trial of the study is queued or running: a look needs its whole round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ablate.config.variant import compared_with

from .states import Attempt, State

if TYPE_CHECKING:
    from ablate.config.variant import Variant

    from .ledger import Ledger


def adaptive(ledger: Ledger) -> bool:
    """The study adds seeds where its verdicts are open (a study of fixed variants with `evidence.max_seeds`)."""
    study = ledger.loaded.study
    top = study.evidence.max_seeds
    return ledger.search is None and study.search is None and top is not None and top > len(study.seeds)


def planned(ledger: Ledger, latest: dict[str, Attempt]) -> dict[str, tuple[Variant, int, int, str]]:
    """The trials the plan adds, by trial id: (variant, seed, round, why), from the finished trials `latest`."""
    if not adaptive(ledger):
        return {}
    import pandas as pd  # scipy.stats and pandas: ~2 s to import, only for a study with rounds

    from ablate.evidence import Rule, plan

    variants = ledger.loaded.variants
    values = _scores(ledger, latest)
    against = compared_with([v.group or "" for v in variants], ledger.loaded.kind, [v.name for v in variants],
                            [v.vs for v in variants])
    changes = [(j, i) for i, j in enumerate(against) if j is not None]
    pairs = [(values.get(variants[j].id, pd.Series(dtype=float)), values.get(variants[i].id, pd.Series(dtype=float)))
             for j, i in changes]
    out: dict[str, tuple[Variant, int, int, str]] = {}
    for k, opened in plan(pairs, Rule.of(ledger.loaded.study)).items():
        for c, seeds in opened.items():
            j, i = changes[c]
            why = f"round {k}: '{variants[i].name}' undetermined after look {k}"
            for v in (variants[j], variants[i]):
                for s in seeds:
                    out.setdefault(v.trial_id(s), (v, s, k, why))
    return out


def _scores(ledger: Ledger, latest: dict[str, Attempt]) -> dict[str, Any]:
    """variant id -> the study's readout (`evidence.readout`, top-1 by default; a loss negated) per seed of its
    finished (and not stale) trials: the verdicts the report replays are of the same numbers."""
    from ablate.evidence import READOUTS

    readout = READOUTS[ledger.loaded.study.evidence.readout]
    got: dict[str, dict[int, float]] = {}
    for key, t in latest.items():
        value = t.user_attrs.get(readout.column)
        if t.state is not State.COMPLETE or ledger.is_stale(t) or value is None:
            continue
        vid, seed = t.user_attrs.get("variant_id"), t.user_attrs.get("seed")
        if vid is not None and seed is not None and key.startswith(str(vid)):
            got.setdefault(str(vid), {})[int(seed)] = readout.sign * float(value)
    import pandas as pd

    return {vid: pd.Series(v, dtype=float) for vid, v in got.items()}


def round_open(ledger: Ledger, latest: dict[str, Attempt]) -> bool:
    """A trial of the study is queued or running: its round is not whole yet."""
    keys = ledger.by_key
    return any(t.state in (State.WAITING, State.RUNNING) for k, t in latest.items() if k in keys)
