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
        values = {k: _json_value(v) for k, v in metrics.items() if k in (*METRICS, "seed_metrics")}
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


COUNTS = ("params", "gflops", "params_train", "gflops_train")
METRICS = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.name not in (*COUNTS, "seed_metrics"))


def _json_value(v: Any) -> Any:
    """Ledger attributes must be JSON: numbers, strings, None (a tensor's or numpy's scalar as its number)."""
    if hasattr(v, "item"):
        v = v.item()
    return v if isinstance(v, int | float | str | bool) or v is None else str(v)


def json_attrs(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as ledger attributes: JSON values (numbers, strings, None)."""
    return {k: _json_value(v) for k, v in metrics.items()}
