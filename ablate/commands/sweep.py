"""`ablate run` and `ablate worker`: queue a study's trials and train them (`ablate status`: status.py)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from ablate.verbosity import info, quiet

from .launch import (
    AccountOpt,
    CpusOpt,
    GpusOpt,
    LauncherConfigOpt,
    LauncherOpt,
    NetworkJournalOpt,
    PartitionOpt,
    SbatchOpt,
    TimeOpt,
    launch,
    launcher_spec,
)
from .options import (
    AllowLargeOpt,
    DeviceOpt,
    GraceOpt,
    HeartbeatOpt,
    LingerOpt,
    MaxRetryOpt,
    ResultsOpt,
    SetOpt,
    StorageOpt,
    StudyArg,
    TensorboardOpt,
)
from .preflight import check_data, check_device, check_tensorboard
from .status import print_status
from .study import check_sizes, count


def run(
    study: StudyArg,
    set_: SetOpt = None,
    workers: Annotated[int | None, typer.Option(
        min=1, envvar="ABLATE_WORKERS", show_default=False,
        help="Local worker processes (CPU threads are split between them; on a GPU box one GPU each). Default: "
             "on a CPU one per core (at most 4, and no more than the trials queued), as trials side by side use a "
             "small CPU better than one trial on all its cores; on a GPU, 1. --launcher slurm: worker jobs.")] = None,
    storage: StorageOpt = None,
    retry_failed: Annotated[bool, typer.Option(help="Queue failed trials again.")] = False,
    device: DeviceOpt = None,
    results: ResultsOpt = Path("results"),
    enqueue_only: Annotated[bool, typer.Option(
        "--enqueue-only", help="Only queue the study's missing trials (e.g. once, before starting "
        "`ablate worker` on every node); train nothing.")] = False,
    heartbeat: HeartbeatOpt = None,
    grace: GraceOpt = None,
    max_retry: MaxRetryOpt = 3,
    linger: LingerOpt = True,
    allow_large: AllowLargeOpt = False,
    tensorboard: TensorboardOpt = None,
    launcher: LauncherOpt = "local", launcher_config: LauncherConfigOpt = None,  # --launcher slurm: launch.py
    partition: PartitionOpt = None, time: TimeOpt = None, account: AccountOpt = None,
    gpus_per_worker: GpusOpt = None, cpus_per_worker: CpusOpt = None,
    sbatch: SbatchOpt = None, network_journal: NetworkJournalOpt = False,
) -> None:
    """Train and evaluate every variant x seed of a study, then write results/<study>/results.csv.

    Idempotent: what is complete is never trained again, an interrupted trial continues from its last
    epoch checkpoint, failed trials keep their reason (re-run them with --retry-failed).
    """
    from ablate.config.load import load_study

    loaded = load_study(study, set_ or [])
    check_sizes(loaded, allow_large)
    from ablate.sweep.options import LedgerOptions
    from ablate.sweep.worker import WorkerOptions

    ledger_opts = LedgerOptions(storage, results, heartbeat, grace, max_retry)
    spec = launcher_spec(loaded, ledger_opts, launcher_config, partition=partition, time=time, workers=workers,
                         account=account, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
                         sbatch=sbatch, network_journal=network_journal or None) if launcher == "slurm" else None
    if not enqueue_only and spec is None:
        check_device(device)  # before anything is written (the count cache included); no torch op runs
        check_tensorboard(tensorboard)
    ledger, total, done = _enqueue(loaded, ledger_opts, retry_failed, check=not enqueue_only and spec is None)
    if enqueue_only or spec is not None:
        return None if enqueue_only else launch(loaded, set_ or [], ledger_opts, spec, device)
    opts = WorkerOptions(ledger=ledger_opts, device=device, linger=linger, tensorboard=tensorboard)
    if workers is None:
        from ablate.sweep.devices import default_workers

        workers = default_workers(device, total - done)
    try:
        codes = _train(loaded, workers, opts, ledger, total, done)
    except KeyboardInterrupt:  # the worker processes leave summary.csv to this process
        with contextlib.suppress(OSError):  # a full disk: the ledger holds every result all the same
            _write_all(ledger)
        raise
    _finish(loaded, ledger, study, codes)


def _enqueue(loaded, options, retry_failed: bool, check: bool):
    """Count the networks, check the data (`check`), queue the missing trials and write results.csv as it
    stands: (the ledger, trials in all, trials already done)."""
    from ablate.sweep.ledger import Ledger
    from ablate.sweep.states import Status

    count(loaded, use_cache=True)  # first (its worker processes fork before any torch op runs here): the cache
    if check:
        check_data(loaded)
    ledger = Ledger(loaded, options)
    ledger.expect_current_data()  # results trained on other data (data.root changed) are trained again
    queued = ledger.sync(retry_failed=retry_failed)
    total = loaded.study.search.trials if ledger.search is not None else len(ledger.by_key)
    info(queue_line(ledger, total, queued))
    _write_all(ledger)
    return ledger, total, queued[Status.DONE]


def queue_line(ledger, total: int, queued: dict) -> str:
    """What this run will train: `s: 6 trials: 3 already done, 3 to train (1 queued, 2 sampled by the search as it
    runs), 1 failed and not retried (--retry-failed trains it) (ledger: ...)`."""
    from ablate.sweep.states import Status

    loaded = ledger.loaded
    waiting, now = ledger.waiting(), queued[Status.QUEUED]  # all still to be trained, and those queued just now
    sampled = 0
    if ledger.search is not None:
        from ablate.sweep.search import budget_left

        sampled = max(budget_left(ledger), 0)
    parts = [f"{waiting} queued" + (f", {waiting - now} of them by an earlier run" if waiting > now else "")] * bool(
        waiting) + [f"{sampled} sampled by the search as it runs"] * bool(sampled)
    line = (f"{loaded.name}: {total} trials: {queued[Status.DONE]} already done, {waiting + sampled} to train"
            + (f" ({'; '.join(parts)})" if parts else ""))
    failed, running = ledger.failed(), ledger.running()
    if failed:
        line += f", {failed} failed and not retried (--retry-failed trains {'them' if failed > 1 else 'it'})"
    if running:
        line += f", {running} running on other workers"
    top = loaded.study.evidence.max_seeds
    more = (f"; up to {len(loaded.variants) * top} as seeds are added where a verdict stays open "
            f"(evidence.max_seeds {top})" if top and ledger.search is None and top > len(loaded.study.seeds) else "")
    return f"{line} (ledger: {ledger.where}){more}"


def _train(loaded, workers: int, opts, ledger, total: int, done: int) -> list[int]:
    """Train in this process, or in `workers` local processes under a progress bar: their exit codes."""
    from ablate.sweep.worker import run_workers, work

    if workers == 1:
        import dataclasses

        work(loaded, dataclasses.replace(opts, parent_writes=True))  # _finish writes the exports
        return [0]
    from tqdm import tqdm

    bar = tqdm(total=total, initial=done, desc="trials", unit="trial", file=sys.stderr,
               disable=True if quiet() else None)

    def poll() -> None:  # a failed trial ends too: the bar counts it, and says so, and its estimate skips it
        with contextlib.suppress(OSError):  # the ledger unreachable: the workers say so; the bar just waits
            failed = ledger.failed()
            bar.n = ledger.progress()[0] + failed
            bar.set_postfix_str(f"{failed} failed" if failed else "", refresh=False)
            bar.refresh()

    try:
        return run_workers(loaded, workers, opts, on_poll=poll, on_first_exit=_prepare_finish)
    finally:
        bar.close()


def _prepare_finish() -> None:
    """Import what `_finish` needs (summary.csv's statistics: scipy.stats, ~1.5 s) while the last workers
    train: a worker that ran out of work has left its core free, and the run ends sooner."""
    import importlib

    importlib.import_module("ablate.report.analysis")


def _finish(loaded, ledger, study: Path, codes: list[int]) -> None:
    """Write results.csv, print the status, and exit as the workers did (2: environment fault, 130:
    interrupted, 1: trials not done)."""
    path, df = _write_all(ledger)
    print_status(ledger, to=sys.stdout, df=df)  # the result: stdout, as `ablate status` prints it
    info(f"results: {path}")
    if 2 in codes:
        raise typer.Exit(2)  # a worker stopped on an environment fault (its line is above)
    if 130 in codes:
        raise KeyboardInterrupt
    exit_summary(ledger, study, df)


def _write_all(ledger):
    """results.csv/parquet and summary.csv as the ledger stands, from one view of its records: (the path of
    results.csv, the view)."""
    from ablate.report.summary import write_summary
    from ablate.sweep.results import results_frame, write_results

    df = results_frame(ledger, count_missing=True)
    path = write_results(ledger, df)
    write_summary(ledger.dir, df, ledger.loaded)
    return path, df


def exit_summary(ledger, study: Path, df) -> None:
    """Exit 1 with a one-line summary unless every trial asked for (`df`: the study's results table) is done."""
    from ablate.sweep.states import Status

    total = ledger.search.trials if ledger.search is not None else len(df)
    ended = df["status"].isin([Status.DONE, Status.PRUNED])  # a pruned search trial ended as asked
    done = int(ended.sum())
    if done >= total:
        return
    counts = df[~ended]["status"].value_counts().to_dict()
    parts = ", ".join(f"{n} {k}" for k, n in counts.items())
    hint = " (see `ablate status`; --retry-failed trains failed ones again)" if counts.get(Status.FAILED) else ""
    print(f"{study}: {done} of {total} trials done; {parts or f'{total - done} not run'}{hint}", file=sys.stderr)
    raise typer.Exit(1)


def worker(
    study: StudyArg,
    set_: SetOpt = None,
    storage: StorageOpt = None,
    device: DeviceOpt = None,
    results: ResultsOpt = Path("results"),
    max_trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
    heartbeat: HeartbeatOpt = None,
    grace: GraceOpt = None,
    max_retry: MaxRetryOpt = 3,
    linger: LingerOpt = True,
    nproc_per_node: Annotated[int, typer.Option(min=1, help="Processes per trial: data-parallel training with "
                                                "torch DDP (gloo on CPU, NCCL with one GPU each on CUDA).")] = 1,
    allow_large: AllowLargeOpt = False,
    tensorboard: TensorboardOpt = None,
) -> None:
    """Join a running study as one more worker (e.g. on another machine with --storage postgresql://...).

    Takes queued trials until none is left. Does not queue anything itself (`ablate run` does), but on an
    RDB storage it fails and retries the trials of workers that stopped sending heartbeats.
    """
    from ablate.config.load import load_study
    from ablate.sweep.states import Status
    from ablate.sweep.worker import WorkerOptions, work

    loaded = load_study(study, set_ or [])
    check_sizes(loaded, allow_large)
    check_device(device)
    check_tensorboard(tensorboard)
    from ablate.sweep.options import LedgerOptions

    opts = WorkerOptions(ledger=LedgerOptions(storage, results, heartbeat, grace, max_retry), device=device,
                         max_trials=max_trials, linger=linger, nproc=nproc_per_node, tensorboard=tensorboard)
    stats = None
    try:
        stats = work(loaded, opts)
    finally:  # however it stops, unless it ended no trial: summary.csv of what the ledger holds now
        if stats is None or any(stats.values()):
            _write_summary(loaded, opts.ledger)
    failed, ran = stats[Status.FAILED], stats[Status.DONE] + stats[Status.FAILED] + stats[Status.PRUNED]
    if failed:
        print(f"{study}: {failed} of {ran} trials this worker ran failed (see `ablate status`)", file=sys.stderr)
        raise typer.Exit(1)


def _write_summary(loaded, options) -> None:
    """summary.csv as the ledger stands (a full disk: the ledger holds every result all the same)."""
    from ablate.config.errors import StudyError
    from ablate.report.summary import write_summary
    from ablate.sweep.ledger import Ledger
    from ablate.sweep.results import results_frame

    with contextlib.suppress(OSError, StudyError):  # the worker's own error, if any, is the one that is shown
        ledger = Ledger(loaded, options)
        write_summary(ledger.dir, results_frame(ledger, count_missing=True), loaded)
