"""Data sources and the training/eval engine (timm optimizers, schedules, mixup, EMA)."""

from .data import BatchSource, Data, DataError, load_data
from .engine import TrialFailed, run_trial

__all__ = ["BatchSource", "Data", "DataError", "TrialFailed", "load_data", "run_trial"]
