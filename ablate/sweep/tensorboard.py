"""Optional TensorBoard scalars per trial (`ablate run/worker --tensorboard DIR`): each epoch's metrics.csv
row as scalars at step = epoch, in DIR/<study>/<trial id>/. torch's SummaryWriter does the writing; it needs
the `tensorboard` package (`pip install 'ablate[tensorboard]'`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def available() -> bool:
    import importlib

    try:
        importlib.import_module("tensorboard")
    except ImportError:
        return False
    return True


class ScalarLog:
    """One trial's scalars. A resumed trial writes its replayed epochs again (TensorBoard keeps the last)."""

    def __init__(self, root: Path, study: str, key: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(root) / study / key))

    def __call__(self, row: dict[str, Any]) -> None:
        step = int(float(row.get("epoch", 0)))
        for name, value in row.items():
            if name == "epoch":
                continue
            try:
                x = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(x):
                self.writer.add_scalar(name, x, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
