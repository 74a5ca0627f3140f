"""A trial's record: what an attempt leaves when it ends, typed and written once into the ledger (as the trial's
user attributes): its final metrics and, when it finished, the FLOP/parameter counts of its network. results.csv,
`ablate status`, summary.csv and the report are views of these records (`results.py`); nothing re-derives them.

This is the one home of the metric names a trial records: `METRICS` (results.csv's metric columns, in order)
and `COUNTS` are the record's fields. A trial recorded before counts were part of the record holds no `gflops`;
its counts are then read from the count cache (and a `params` attribute of such a record, the trained
network's count, is not taken for the paper-scale one)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrialRecord:
    """The metrics of an attempt (None: not measured) and the counts of its network (None: not recorded)."""

    top1: float | None = None  # final validation top-1 (%)
    top5: float | None = None
    top1_best: float | None = None  # best epoch's top-1
    top5_best: float | None = None
    ema_top1: float | None = None  # the EMA weights' final top-1 (recipe.ema)
    ema_top5: float | None = None
    loss: float | None = None  # final validation loss
    epochs: int | None = None  # epochs trained
    train_img_per_s: float | None = None  # median training throughput over the epochs (the first left out)
    infer_img_per_s: float | None = None
    peak_mem_mb: float | None = None
    wall_seconds: float | None = None  # over every attempt of the trial (a resumed one adds its checkpoint's)
    device: str | None = None
    params: int | None = None  # at the paper's scale (measure.flops_image_size, 3 channels, 1000 classes)
    gflops: float | None = None
    params_train: int | None = None  # the network as trained (after `scale:`, at the data's size)
    gflops_train: float | None = None
    seed_metrics: str | None = None  # a search configuration trained on several seeds: {seed: {metric: value}}
    #                                  as JSON (the metrics above are their means)

    @classmethod
    def of(cls, metrics: dict[str, Any], counts: dict[str, Any] | None = None) -> TrialRecord:
        """The record of a run's metrics (`run_trial`'s, or an epoch row's) and the variant's counts row
        (`measure.table.count_study`); names the record does not hold are left out."""
        values = {k: json_value(v) for k, v in metrics.items() if k in (*METRICS, "seed_metrics")}
        values.update({k: (counts or {}).get(k) for k in COUNTS if counts})
        return cls(**values)

    @classmethod
    def read(cls, attrs: dict[str, Any]) -> TrialRecord:
        """The record a trial's user attributes hold."""
        keys = (*METRICS, "seed_metrics", *(COUNTS if "gflops" in attrs else ()))
        return cls(**{k: attrs.get(k) for k in keys})

    def attrs(self) -> dict[str, Any]:
        """The record as the trial's user attributes (JSON values; what was not measured is left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def counts(self) -> dict[str, Any] | None:
        """The recorded counts (None: a record without them)."""
        return None if self.gflops is None else {k: getattr(self, k) for k in COUNTS}


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
    plain = {str(s): {k: json_value(v) for k, v in m.items() if isinstance(json_value(v), int | float)}
             for s, m in per_seed.items()}
    out["seed_metrics"] = json.dumps(plain, sort_keys=True)
    return out


COUNTS = ("params", "gflops", "params_train", "gflops_train")
METRICS = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.name not in (*COUNTS, "seed_metrics"))


def json_value(v: Any) -> Any:
    """Ledger attributes must be JSON: numbers, strings, None (a tensor's or numpy's scalar as its number)."""
    if hasattr(v, "item"):
        v = v.item()
    return v if isinstance(v, int | float | str | bool) or v is None else str(v)
