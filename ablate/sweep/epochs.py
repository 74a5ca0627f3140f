"""The hook `run_trial` calls after each epoch (`on_epoch`): the epoch's row to the ledger (optuna's learning
curve) and, with --tensorboard, to TensorBoard; in a search with a pruner, `Pruned` when the pruner stops the
trial. It is raised from inside `run_trial`, after the epoch's checkpoint and metrics row are written, and
propagates out of it (the engine wraps no exception of the hook); the worker records the trial as pruned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .record import TrialRecord


class Pruned(Exception):
    """Raised by the epoch hook when the search's pruner stops the trial (after the epoch's checkpoint is
    written); the worker records the trial as pruned."""

    def __init__(self, reason: str, row: dict[str, Any]):
        super().__init__(reason)
        self.reason = reason
        self.row = row

    def record(self, wall_seconds: float) -> TrialRecord:
        """The pruned trial's record: its last epoch's metrics (metrics.csv names the loss `val_loss` and the epoch
        `epoch`: they are the record's `loss` and `epochs`)."""
        row = {k: v for k, v in self.row.items() if k in ("top1", "top5", "ema_top1") and v is not None}
        for k, ours in (("val_loss", "loss"), ("epoch", "epochs")):
            if self.row.get(k) is not None:
                row[ours] = self.row[k]
        return TrialRecord.of({"wall_seconds": wall_seconds, **row})


class EpochHook:
    """Each finished epoch's metrics row: to the ledger (optuna's learning curve) and, with --tensorboard, to
    the trial's TensorBoard scalars."""

    def __init__(self, ledger: Any, item: Any, opts: Any, prune: bool = True):
        from .tensorboard import ScalarLog

        self.ledger, self.item, self.prune = ledger, item, prune
        self.tb = ScalarLog(opts.tensorboard, ledger.loaded.study.name, item.key) if opts.tensorboard else None

    def __call__(self, row: dict[str, Any]) -> None:
        """Report the epoch; then, when the search's pruner says so, stop the trial: `Pruned` propagates out of
        `run_trial` (which calls this after writing the epoch's checkpoint and metrics row)."""
        self.ledger.report(self.item, [row])
        if self.tb is not None:
            self.tb(row)
        epoch = row.get("epoch")
        why = self.ledger.prune_reason(self.item, int(epoch)) if self.prune and epoch is not None else None
        if why:
            raise Pruned(why, row)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def replay(self, trial_dir: Path) -> None:
        """A data-parallel trial's learning curve, reported once it has finished (rank 0's metrics.csv); never
        pruned: nothing is left to save."""
        self.prune = False
        for row in curve(trial_dir):
            self(row)


def curve(trial_dir: Path) -> list[dict[str, Any]]:
    """The rows of a trial's metrics.csv (none when it has none); empty cells are NaN, which the ledger's
    `report` and the TensorBoard log skip."""
    import pandas as pd

    path = trial_dir / "metrics.csv"
    return pd.read_csv(path).to_dict("records") if path.is_file() else []
