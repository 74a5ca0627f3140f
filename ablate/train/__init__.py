"""Data sources and the training/eval engine (timm optimizers, schedules, mixup, EMA).

The names below are imported on first use (PEP 562), so that `ablate.train.sources` (where the data is,
its fingerprint) can be imported without torch by the reading commands."""

from __future__ import annotations

from typing import Any

__all__ = ["BatchSource", "Data", "DataError", "TrialFailed", "load_data", "run_trial"]

_WHERE = {"BatchSource": "data", "Data": "data", "load_data": "data", "DataError": "sources",
          "TrialFailed": "engine", "run_trial": "engine"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ablate.train' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
