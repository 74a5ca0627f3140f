"""`ablate run`, `ablate worker` and `ablate status`: queue a study's trials, train them, show where they are."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

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
    waiting, now = ledger.waiting(), queued[Status.QUEUED]  # all still to be trained, and those queued just now
    earlier = f" ({waiting - now} of them by an earlier run)" if waiting > now else ""
    top = loaded.study.evidence.max_seeds
    more = (f"; up to {len(loaded.variants) * top} as seeds are added where a verdict stays open "
            f"(evidence.max_seeds {top})" if top and ledger.search is None and top > len(loaded.study.seeds) else "")
    print(f"{loaded.name}: {total} trials, {queued[Status.DONE]} already done, {waiting} queued{earlier} "
          f"(ledger: {ledger.where}){more}", file=sys.stderr)
    _write_all(ledger)
    return ledger, total, queued[Status.DONE]


def _train(loaded, workers: int, opts, ledger, total: int, done: int) -> list[int]:
    """Train in this process, or in `workers` local processes under a progress bar: their exit codes."""
    from ablate.sweep.worker import run_workers, work

    if workers == 1:
        import dataclasses

        work(loaded, dataclasses.replace(opts, parent_writes=True))  # _finish writes the exports
        return [0]
    from tqdm import tqdm

    bar = tqdm(total=total, initial=done, desc="trials", unit="trial", file=sys.stderr, disable=None)

    def poll() -> None:
        with contextlib.suppress(OSError):  # the ledger unreachable: the workers say so; the bar just waits
            bar.n = ledger.progress()[0]
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
    print_status(ledger, df=df)
    print(f"results: {path}", file=sys.stderr)
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


def status(study: StudyArg, set_: SetOpt = None, storage: StorageOpt = None,
           results: ResultsOpt = Path("results"), heartbeat: HeartbeatOpt = None, grace: GraceOpt = None) -> None:
    """Done / running / failed / queued trials of a study, and the best so far.

    A trial whose worker died reads as interrupted: on this machine's journal when its process is gone; on an
    RDB storage when it sent no heartbeat for the grace period (give the workers' --heartbeat/--grace)."""
    from ablate.config.load import load_study
    from ablate.sweep.ledger import Ledger

    loaded = load_study(study, set_ or [])
    from ablate.sweep.options import LedgerOptions

    ledger = Ledger(loaded, LedgerOptions(storage, results, heartbeat, grace, readonly=True))  # writes nothing
    ledger.expect_current_data()
    print_status(ledger, to=sys.stdout)
    from ablate.sweep.slurm_status import print_jobs

    print_jobs(ledger.dir, to=sys.stdout)


def print_status(ledger, to=None, df=None) -> None:
    """The status table of the study's trials (`df`: its results table, when already built)."""
    from ablate.sweep.results import results_frame
    from ablate.sweep.states import Status

    to = to or sys.stderr  # looked up now: sys.stderr may have been replaced since import
    df = results_frame(ledger) if df is None else df
    counts = df["status"].value_counts().to_dict()
    line = Status.counts_line(counts)  # every status with a trial, in display order (skipped ones too)
    search = ledger.loaded.study.search if ledger.search is not None else None
    if df.empty:
        print(f"{ledger.loaded.name}: no trial yet ({ledger.loaded.plan()}); `ablate run` queues and trains them",
              file=to)
        return
    total = f" of {search.trials} search" if search is not None else ""
    print(f"{ledger.loaded.name}: {len(df)}{total} trials: {line}", file=to)
    cols = ["name", "seed", "status", "attempts", "top1", "epochs", "fail_reason"]
    show = df[cols].copy()
    show["fail_reason"] = show["fail_reason"].fillna("").astype(str).str.slice(0, 60)
    if (df["round"] > 0).any():  # seeds the adaptive rule added (evidence.max_seeds): when, and why
        show.insert(2, "round", df["round"])
    notes = _retry_notes(ledger)
    if any(notes.get(k) for k in df["trial_id"]) or (df["round"] > 0).any():
        show["note"] = [(notes.get(k) or why or "")[:70] for k, why in zip(df["trial_id"], df["seeded_because"],
                                                                           strict=True)]
    print(show.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}"), file=to)
    done = df[df["status"] == Status.DONE]
    if not done.empty:
        best = done.loc[done["top1"].idxmax()]
        print(f"best so far: {best['name']} (seed {best['seed']}): top-1 {best['top1']:.2f}", file=to)
    if (df["round"] > 0).any():
        print(f"adaptive seeds (evidence.max_seeds {ledger.loaded.study.evidence.max_seeds}): round "
              f"{int(df['round'].max())} planned; a round adds seeds to the variants of changes still "
              "undetermined after the look before it", file=to)
    note = ledger.version_note()
    if note:
        print(note, file=to)
    if counts.get(Status.STALE):
        print(f"note: {counts[Status.STALE]} finished trial(s) were trained on other data than data.root holds now "
              "(stale): `ablate run` trains them again", file=to)


def _retry_notes(ledger) -> dict[str, str]:
    """Trial id -> 'retried after: <why the previous attempt failed>' for trials with an earlier failed attempt."""
    from ablate.sweep.states import State

    notes = {}
    for key, attempts in ledger.history().items():
        failed = [t for t in attempts[:-1] if t.state is State.FAIL]
        if failed:
            n = f" ({len(failed)} failed attempts)" if len(failed) > 1 else ""
            notes[key] = f"retried{n} after: {failed[-1].user_attrs.get('fail_reason', 'failure')}"
    return notes
