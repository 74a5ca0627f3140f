"""Workers: take queued trials from the ledger, train them, record the outcome. Local parallelism
is N worker processes on one ledger; remote machines join with `ablate worker --storage URL`.

On RDB storages a worker records heartbeats while it trains, fails the trials of dead workers (no
heartbeat within the grace period) before it takes work, and so retries them; with `linger` it also waits
while other workers' trials still run, so that the last trials of a sweep are retried too if their worker
dies."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.config.errors import StudyError
from ablate.config.plugins import import_plugins
from ablate.config.variant import LoadedStudy
from ablate.measure.table import count_variant
from ablate.verbosity import quiet

from . import search
from .devices import gpu_for
from .epochs import EpochHook, Pruned
from .heartbeat import Heartbeat, StopEither
from .ledger import Ledger
from .options import LedgerOptions
from .record import TrialRecord
from .results import write_results
from .states import FailKind, Item, Status
from .store import TakenOver

# Seconds between one worker's rewrites of results.csv (an export: the ledger is the record, and the report and
# `ablate status` read the ledger). Rewriting it after every trial cost the quick proxy ~0.25 s a trial, and on
# a cluster every worker would rewrite the whole table after each of thousands of trials. A worker always
# writes it when it stops, and `ablate run` when its workers are done.
RESULTS_EVERY = 30.0
ROUND_POLL = 2.0  # seconds between looks at a round whose last trials train on another worker


class EnvironmentFault(StudyError):
    """Not the trial's fault (a full or read-only disk, a lost file system): the trial is left resumable and
    the worker stops; the CLI prints the one line and exits 2."""

    def __init__(self, where: str, problem: str):
        super().__init__(where, "", problem)


@dataclass
class WorkerOptions:
    ledger: LedgerOptions = field(default_factory=LedgerOptions)  # storage, results, heartbeat, grace, retries
    device: str | None = None
    threads: int | None = None
    progress: bool = field(default_factory=lambda: not quiet())  # per-epoch bars (`ablate --quiet`: none)
    max_trials: int | None = None
    linger: bool = True  # queue empty but trials running elsewhere: wait, to retry them if their worker dies
    nproc: int = 1  # processes per trial (DDP); rank 0's results reach the ledger through this worker
    log_prefix: str = ""
    tensorboard: Path | None = None  # per-trial TensorBoard scalars under this folder (ablate.sweep.tensorboard)
    parent_writes: bool = False  # started by `ablate run`, which writes results.csv when its workers are done

    def log(self, line: str, always: bool = False) -> None:
        """A line on stderr; under `ablate --quiet` only those `always` shown (a failure, why a worker stops)."""
        if always or not quiet():
            print(f"{self.log_prefix}{line}", file=sys.stderr, flush=True)


def work(loaded: LoadedStudy, opts: WorkerOptions, stop: threading.Event | None = None) -> dict[str, int]:
    """Run queued trials until none is left (or `max_trials`). Returns counts (by `Status.DONE`,
    `Status.FAILED`, `Status.PRUNED`) of the trials this worker finished / saw fail by their own fault / saw
    stopped by a search's pruner."""
    ledger = Ledger(loaded, opts.ledger)
    ledger.expect_current_data()  # a result on other data does not make a re-queued attempt a duplicate
    stats = {Status.DONE: 0, Status.FAILED: 0, Status.PRUNED: 0}
    spent: list[float] = []  # seconds of each trial this worker ended (the progress line's estimate)
    written, unwritten, done = time.monotonic(), False, False
    try:
        while opts.max_trials is None or sum(stats.values()) < opts.max_trials:
            item = _next_item(ledger, opts, stop)
            if item is None:
                break
            start = time.time()
            outcome = _attempt(ledger, item, opts, stop)
            if outcome is None:  # taken over by another worker: its outcome is not ours to count
                continue
            stats[outcome] += 1
            unwritten = True
            if time.monotonic() - written >= RESULTS_EVERY:
                write_results(ledger)
                written, unwritten = time.monotonic(), False
            spent.append(time.time() - start)
            opts.log(progress_line(ledger, spent))
        done = not (stop is not None and stop.is_set())
    finally:  # however the worker stops; a disk fault has already been said, and the ledger holds all
        _write_on_stop(ledger, opts, unwritten, done, sum(stats.values()))
    return stats


def _write_on_stop(ledger: Ledger, opts: WorkerOptions, unwritten: bool, done: bool, ended: int) -> None:
    """results.csv when a worker stops (`done`: it ran out of work or reached max_trials; else interrupted, or
    stopped by a data or disk fault, with a trial just marked resumable). A worker of `ablate run` that is done
    leaves it to the run, which writes it next (on its critical path: ~0.5 s). summary.csv is the commands'
    (`ablate run`, `ablate worker`) to write, once the workers have stopped."""
    if done and (opts.parent_writes or not (unwritten or ended)):
        return
    with contextlib.suppress(OSError):
        write_results(ledger)


def _next_item(ledger: Ledger, opts: WorkerOptions, stop: threading.Event | None) -> Item | None:
    """The next trial to train; None when none is left (or asked to stop). With `linger` on an RDB storage,
    an empty queue while trials still run elsewhere is waited on (every heartbeat), to retry them should
    their worker die."""
    said = False
    while not (stop is not None and stop.is_set()):
        ledger.fail_stale()  # trials of dead workers: failed here, and queued again by the retry callback
        item = ledger.pop()
        if item is None:
            queued = ledger.next_round()  # the adaptive rule's next seeds, once the current round is whole
            if queued > 0:
                opts.log(f"confirming the best {ledger.search.confirm} configurations: {queued} trial(s) queued"
                         if ledger.search is not None else
                         f"verdicts still open: round {max(k for k, _ in ledger.rounds.values())} queued "
                         f"{queued} more trial(s) (`ablate status` says why each variant got its seeds)")
                continue
            if queued < 0:  # the round's last trials train elsewhere: its look needs them
                _wait(stop, ROUND_POLL)
                continue
        if item is not None or not (opts.linger and ledger.heartbeat and ledger.running()):
            return item
        if not said:
            opts.log(f"queue empty; {ledger.running()} trial(s) still running elsewhere: waiting, to retry "
                     "them should their worker die (--no-linger to stop now)")
            said = True
        _wait(stop, ledger.heartbeat)
    return None


def _wait(stop: threading.Event | None, seconds: float) -> None:
    if stop is not None:
        stop.wait(seconds)
    else:
        time.sleep(seconds)


def _attempt(ledger: Ledger, item: Item, opts: WorkerOptions, stop: threading.Event | None) -> Status | None:
    """Train one trial and record its outcome: DONE, FAILED (its own fault), PRUNED, or None when the trial was
    taken over by another worker. An interrupt, unreadable data and a disk fault are recorded as resumable
    and raised (the worker stops)."""
    from ablate.train.checkpoint import Disowned
    from ablate.train.engine import TrialFailed
    from ablate.train.sources import DataError

    v, start = item.variant, time.time()
    opts.log(f"[{item.key}] {v.name} (seed {item.seed}): training")
    beat = Heartbeat(ledger.store, item.trial_id, ledger.heartbeat, log=opts.log)
    on_epoch = EpochHook(ledger, item, opts, prune=opts.nproc == 1)
    try:
        metrics = _train(ledger, item, opts, StopEither(stop, beat.lost), beat, on_epoch)
    except Disowned:
        _taken_over(opts, item)
        return None
    except KeyboardInterrupt:
        if beat.lost.is_set() and not (stop is not None and stop.is_set()):
            _taken_over(opts, item)
            return None
        _stop_resumable(ledger, item, opts, "interrupted; resumes from its last epoch checkpoint",
                        FailKind.INTERRUPTED)
        raise
    except DataError as e:
        _stop_resumable(ledger, item, opts, str(e), FailKind.DATA)  # resumable: queued again
        raise
    except OSError as e:  # the disk or file system, not the trial: leave it resumable and stop this worker
        raise _environment_fault(ledger, item, opts, e) from None
    except Pruned as e:
        if not _record(opts, item, ledger.prune, item, e.reason, record=e.record(time.time() - start)):
            return None
        opts.log(f"[{item.key}] {v.name}: {e.reason}")
        return Status.PRUNED
    except Exception as e:  # noqa: BLE001 - any error of one trial is recorded; the sweep goes on
        own = isinstance(e, TrialFailed)
        why = str(e) if own else f"{type(e).__name__}: {e}"
        tail = None if own else "".join(traceback.format_exception(e)[-6:])
        if not _record(opts, item, ledger.fail, item, why, kind=FailKind.ERROR, traceback=tail,
                       record=TrialRecord(wall_seconds=time.time() - start)):
            return None
        opts.log(f"[{item.key}] {v.name}: FAILED: {why}", always=True)
        return Status.FAILED
    finally:
        on_epoch.close()
    if not _record(opts, item, ledger.complete, item, TrialRecord.of(metrics, count_variant(ledger.loaded, v))):
        return None
    opts.log(f"[{item.key}] {v.name}: top-1 {metrics.get('top1', float('nan')):.2f} in {time.time() - start:.0f}s")
    return Status.DONE


def _train(ledger: Ledger, item: Item, opts: WorkerOptions, stop: threading.Event, beat: Heartbeat,
           on_epoch: EpochHook) -> dict[str, Any]:
    """Train the trial (resuming its checkpoint) with heartbeats; its final metrics. A search's sampled
    configuration with `search.seeds: n` trains each of its n seeds in turn (each in its own folder, each
    resumable): the metrics are their means, the objective optuna sees included, and `seed_metrics` holds
    every seed's own."""
    seeds = search.search_seeds(ledger, item)
    with beat:
        if len(seeds) == 1:
            return _train_seed(ledger, item, item.seed, opts, stop, on_epoch)
        per_seed = {s: _train_seed(ledger, item, s, opts, stop, on_epoch if i == 0 else None)
                    for i, s in enumerate(seeds)}
    return search.seed_means(per_seed)


def _train_seed(ledger: Ledger, item: Item, seed: int, opts: WorkerOptions, stop: threading.Event,
                on_epoch: EpochHook | None) -> dict[str, Any]:
    """Train `item`'s variant on `seed` in its own folder (resuming its checkpoint); its final metrics."""
    from ablate.train.engine import run_trial

    key = item.variant.trial_id(seed)
    trial_dir = ledger.dir / "trials" / key
    _start_on_this_data(ledger, item, trial_dir, opts)
    if opts.nproc > 1:  # a data-parallel trial: K processes, one ledger writer (this one)
        from ablate.train.ddp import run_trial_ddp

        metrics = run_trial_ddp(item.variant, seed, trial_dir, opts.nproc, device=opts.device, threads=opts.threads)
        if on_epoch is not None:
            on_epoch.replay(trial_dir)  # rank 0's metrics.csv: the learning curve
        return metrics
    return run_trial(item.variant, seed, trial_dir, device=opts.device, threads=opts.threads,
                     progress=opts.progress, stop=stop, log=lambda line: opts.log(f"[{key}] {line}"),
                     on_epoch=on_epoch, owner=lambda: ledger.owns(item))


def _stop_resumable(ledger: Ledger, item: Item, opts: WorkerOptions, reason: str, kind: FailKind) -> None:
    """Record the trial resumable (queued again by the next sync); the worker then stops, and `_write_on_stop`
    exports the ledger as it stands."""
    _record(opts, item, ledger.fail, item, reason, kind=kind)


def _environment_fault(ledger: Ledger, item: Item, opts: WorkerOptions, e: OSError) -> EnvironmentFault:
    """A disk or file system fault while training: the trial is recorded resumable (when the ledger can still
    be written), its temporary files removed; the one-line error that stops the worker."""
    trial_dir = ledger.dir / "trials" / item.key
    where = e.filename or str(trial_dir)
    with contextlib.suppress(OSError):  # the ledger may be on the same full disk: then the trial stays running,
        _stop_resumable(ledger, item, opts, f"{where}: {e.strerror or e}", FailKind.IO)  # read as died
    for tmp in trial_dir.glob("*.tmp"):  # (resumable) once this process is gone
        with contextlib.suppress(OSError):
            tmp.unlink()
    return EnvironmentFault(where, f"{e.strerror or e} (while training trial {item.key}; it is left "
                            "resumable: fix the cause and run again)")


def progress_line(ledger: Ledger, spent: list[float]) -> str:
    """`roadmap-quick: 12/51 trials done, 1 failed, about 6 min left`: the study's progress over every worker,
    with an estimate for the trials still to train from this worker's mean trial time shared by the workers
    training now (this one included)."""
    (done, total), failed = ledger.progress(), ledger.failed()  # failed: not trained again by this run
    line = f"{ledger.loaded.study.name}: {done}/{total} trials done" + (f", {failed} failed" if failed else "")
    left = total - done - failed
    if left > 0 and spent:
        workers = max(1, ledger.running() + 1)
        eta = left * (sum(spent) / len(spent)) / workers
        line += f", about {_duration(eta)} left"
    return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _start_on_this_data(ledger: Ledger, item: Item, trial_dir: Path, opts: WorkerOptions) -> None:
    """Record which code and which data train this attempt; a checkpoint left by an attempt on other data
    (data.root now names other files) is not resumed."""
    from ablate.train.sources import data_fingerprint

    fp = data_fingerprint(item.variant.data)  # DataError: the data cannot be read
    ledger.provenance(item, fp)
    stamp = trial_dir / "data.fingerprint"
    if stamp.is_file() and stamp.read_text().strip() != fp:
        opts.log(f"[{item.key}] the data changed since the last attempt (fingerprint {stamp.read_text().strip()} "
                 f"-> {fp}): starting over")
        for name in ("checkpoint.pt", "metrics.csv"):
            (trial_dir / name).unlink(missing_ok=True)
    trial_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fp + "\n")


def _record(opts: WorkerOptions, item: Any, fn: Callable[..., None], *args: Any, **kwargs: Any) -> bool:
    """Record a trial's outcome; False when the trial is no longer ours (another worker failed it for
    missing heartbeats and retries it: that attempt's outcome is the one that counts)."""
    try:
        fn(*args, **kwargs)
    except TakenOver:
        _taken_over(opts, item)
        return False
    return True


def _taken_over(opts: WorkerOptions, item: Any) -> None:
    opts.log(f"[{item.key}] this attempt was failed by another worker (its heartbeats did not arrive in time) "
             "and is retried there; dropping it here")


# ---- N local worker processes


def _child(loaded: LoadedStudy, opts: WorkerOptions, index: int) -> None:
    """Entry point of one spawned worker process: it trains the study as the run loaded and queued it (the file
    may have been edited since)."""
    import signal

    from ablate.secrets import guard_output, register

    register(opts.ledger.storage)  # a fresh interpreter: learn the URL's secrets again, then hide them
    guard_output()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us with SIGTERM
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    opts.log_prefix = f"w{index} "
    parent = os.getppid()

    def orphaned() -> None:  # the parent was killed (SIGKILL: it could not stop us): stop as if asked to
        while not stop.wait(1.0):
            if os.getppid() != parent:
                opts.log("the parent `ablate run` is gone: stopping (the trial stays resumable)", always=True)
                stop.set()

    threading.Thread(target=orphaned, name="orphan-watch", daemon=True).start()
    try:
        import_plugins(loaded.study.plugins, loaded.file)  # a fresh interpreter: register the plug-ins again
        stats = work(loaded, opts, stop)
    except KeyboardInterrupt:
        sys.exit(130)
    except StudyError as e:  # an environment fault or unreadable data: one line, exit 2
        opts.log(str(e), always=True)
        sys.exit(2)
    except OSError as e:  # the disk or the ledger's database failed outside a trial: one line, exit 2
        opts.log(f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e), always=True)
        sys.exit(2)
    if stop.is_set():
        sys.exit(130)
    sys.exit(1 if stats[Status.FAILED] else 0)


def run_workers(loaded: LoadedStudy, n: int, opts: WorkerOptions,
                on_poll: Callable[[], None] | None = None, on_first_exit: Callable[[], None] | None = None
                ) -> list[int]:
    """Start n worker processes (each with its share of the CPU threads, or its own GPU) and wait; return
    their exit codes (0 done, 1 a trial failed, 2 environment fault, 130 stopped). `on_poll` runs about once a
    second; `on_first_exit` once, when the first worker ends while others still train (its core is free)."""
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch state
    cores = os.cpu_count() or 1
    procs = []
    for i in range(n):
        # results.csv once the workers are done: this process writes it (`_write_on_stop`)
        o = dataclasses.replace(opts, threads=opts.threads or max(1, cores // n), progress=False,
                                parent_writes=True)
        env_gpu = gpu_for(i)
        if env_gpu is not None:
            o.device = env_gpu
        p = ctx.Process(target=_child, args=(loaded, o, i), daemon=False)
        p.start()
        procs.append(p)
    try:
        while any(p.is_alive() for p in procs):
            if on_poll:
                on_poll()
            wait([p.sentinel for p in procs if p.is_alive()], timeout=1.0)  # returns as soon as one ends
            if on_first_exit and 0 < sum(p.is_alive() for p in procs) < n:
                on_first_exit()
                on_first_exit = None
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
    for p in procs:
        p.join()
    return [p.exitcode if p.exitcode is not None and p.exitcode >= 0 else 130 for p in procs]
