"""Trial checkpoints and metrics files, written atomically: a crash or a full disk never leaves a torn file.

`save` is torch.save through a temp file and `os.replace`; a full disk surfaces as OSError (ENOSPC) so the
worker can leave the trial resumable. `rng_state`/`set_rng_state` carry every RNG a trial draws from, so a
resumed trial continues bit-identically on CPU.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablate.files import atomic_write

COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "top1", "top5", "ema_top1", "ema_top5",
           "epoch_seconds", "train_img_per_s", "infer_img_per_s")


def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _WriteAll:
    """The file torch.save writes to, so that a full disk is an OSError (ENOSPC) and the worker leaves the
    trial resumable: given a path or a Python file, torch reports it as a RuntimeError ("unexpected pos"),
    which reads as the trial's own fault. Errors are kept here (never raised into torch's C++ writer, which
    would swallow them) and raised by `save` once torch.save returns."""

    def __init__(self, raw: Any, name: Path):
        self.raw, self.name = raw, name
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view) and self.error is None:
            try:
                n = self.raw.write(view[done:])
            except OSError as e:
                self.error = e
                break
            if not n:
                import errno

                self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.name))
            done += n or 0
        return len(view)

    def flush(self) -> None:
        if self.error is None:
            try:
                self.raw.flush()
            except OSError as e:
                self.error = e


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back (noted, not lost) while a checkpoint is written and moved into place.

    torch's C++ writer calls the Python `_WriteAll.write`; a KeyboardInterrupt raised in there is swallowed by
    the writer: the save then fails with "unexpected pos" (the trial read as failed by its own fault) or goes
    on, and the interrupt is lost (the worker trains on). Here the signals only note themselves while the file
    is written, then are raised again, to the handlers they had, the moment it is in place. (Blocking them with
    pthread_sigmask is not enough: another thread, e.g. an OpenMP worker, can take the signal, and Python still
    runs the handler in the main thread, inside write().) Main thread only, where Python runs handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    held = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not None:  # None: set outside Python, left alone
            held[sig] = signal.signal(sig, lambda signum, _frame: noted.append(signum))
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(noted):
            signal.raise_signal(sig)


class Disowned(Exception):
    """The trial is no longer this worker's (another worker took it over, e.g. after this one was paused past its
    grace period): nothing more of it is written, so stale work never overwrites fresh work."""


def save(path: Path, payload: dict[str, Any]) -> None:
    """Atomically; a full disk is an OSError (ENOSPC), never torch's RuntimeError (see `_WriteAll`). No temp
    file is left behind. An interrupt during the save takes effect once the file is in place (see
    `_interrupts_held`)."""
    tmp = path.with_name(path.name + ".tmp")
    with _interrupts_held():
        try:
            with open(tmp, "wb", buffering=0) as f:
                out = _WriteAll(f, tmp)
                try:
                    torch.save(payload, out)
                except RuntimeError:
                    if out.error is None:
                        raise
                if out.error is not None:
                    if out.error.filename is None:
                        out.error.filename = str(tmp)
                    raise out.error
            os.replace(tmp, path)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                e.filename, e.filename2 = str(path), None  # the file meant, not the temp file
            raise


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS})

    atomic_write(path, write)
