"""Workers: take queued trials from the ledger, train them, record the outcome. Local parallelism
is N worker processes on one ledger; remote machines join with `ablate worker --storage URL`."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.config.load import LoadedStudy, load_study

from .ledger import Ledger
from .results import write_results


@dataclass
class WorkerOptions:
    storage: str | None = None
    results_root: Path = Path("results")
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    max_trials: int | None = None
    heartbeat: int | None = None
    grace: int | None = None
    log_prefix: str = ""

    def log(self, line: str) -> None:
        print(f"{self.log_prefix}{line}", file=sys.stderr, flush=True)


def study_counts(loaded: LoadedStudy, parallel: bool = False) -> list[dict[str, Any]]:
    from ablate.measure.table import count_study

    return count_study(loaded, parallel=parallel)


def work(loaded: LoadedStudy, opts: WorkerOptions, stop: threading.Event | None = None) -> dict[str, int]:
    """Run queued trials until none is left (or `max_trials`). Returns counts of done / failed."""
    from ablate.train.data import DataError
    from ablate.train.engine import TrialFailed, run_trial

    ledger = Ledger(loaded, opts.storage, opts.results_root, opts.heartbeat, opts.grace)
    counts = None if ledger.search is not None else study_counts(loaded)
    stats = {"done": 0, "failed": 0}
    while opts.max_trials is None or stats["done"] + stats["failed"] < opts.max_trials:
        if stop is not None and stop.is_set():
            break
        item = ledger.pop()
        if item is None:
            break
        v = ledger.variant(item)
        trial_dir = ledger.dir / "trials" / item.key
        opts.log(f"[{item.key}] {v.name} (seed {item.seed}): training")
        start = time.time()
        try:
            metrics = run_trial(v, item.seed, trial_dir, device=opts.device, threads=opts.threads,
                                progress=opts.progress, stop=stop,
                                log=lambda line, key=item.key: opts.log(f"[{key}] {line}"))
        except KeyboardInterrupt:
            ledger.fail(item, "interrupted; resumes from its last epoch checkpoint", kind="interrupted")
            write_results(ledger, counts)
            raise
        except DataError as e:
            ledger.fail(item, str(e), kind="data")  # not the trial's fault: queued again next run
            write_results(ledger, counts)
            raise
        except TrialFailed as e:
            stats["failed"] += 1
            ledger.fail(item, str(e), kind="error", metrics={"wall_seconds": time.time() - start})
            opts.log(f"[{item.key}] {v.name}: FAILED: {e}")
        except Exception as e:  # noqa: BLE001 - any error of one trial is recorded; the sweep goes on
            stats["failed"] += 1
            tail = "".join(traceback.format_exception(e)[-6:])
            ledger.fail(item, f"{type(e).__name__}: {e}", kind="error", traceback=tail,
                        metrics={"wall_seconds": time.time() - start})
            opts.log(f"[{item.key}] {v.name}: FAILED: {type(e).__name__}: {e}")
        else:
            stats["done"] += 1
            ledger.complete(item, _plain(metrics))
            opts.log(f"[{item.key}] {v.name}: top-1 {metrics.get('top1', float('nan')):.2f} "
                     f"in {time.time() - start:.0f}s")
        write_results(ledger, counts)
    return stats


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """Ledger attributes must be JSON: numbers, strings, None."""
    out = {}
    for k, v in metrics.items():
        if hasattr(v, "item"):
            v = v.item()
        out[k] = v if isinstance(v, int | float | str | bool) or v is None else str(v)
    return out


# ---- N local worker processes


def _child(path: str, overrides: list[str], opts: WorkerOptions, index: int) -> None:
    """Entry point of one spawned worker process."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us with SIGTERM
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    opts.log_prefix = f"w{index} "
    with contextlib.suppress(KeyboardInterrupt):
        work(load_study(path, overrides), opts, stop)


def run_workers(loaded: LoadedStudy, overrides: list[str], n: int, opts: WorkerOptions,
                on_poll: Callable[[], None] | None = None) -> None:
    """Start n worker processes (each with its share of the CPU threads, or its own GPU) and wait."""
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch state
    cores = os.cpu_count() or 1
    procs = []
    for i in range(n):
        o = WorkerOptions(**{**opts.__dict__})
        o.threads = opts.threads or max(1, cores // n)
        o.progress = False
        env_gpu = _gpu_for(i)
        if env_gpu is not None:
            o.device = env_gpu
        p = ctx.Process(target=_child, args=(loaded.file, overrides, o, i), daemon=False)
        p.start()
        procs.append(p)
    try:
        while any(p.is_alive() for p in procs):
            if on_poll:
                on_poll()
            for p in procs:
                p.join(timeout=1.0 / max(len(procs), 1))
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the child finishes its step, marks the trial interrupted
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        if on_poll:
            on_poll()


def _gpu_for(i: int) -> str | None:
    """One GPU per worker when there are GPUs (round robin)."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return f"cuda:{i % torch.cuda.device_count()}"
    except ImportError:
        pass
    return None
