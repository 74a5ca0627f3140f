"""The `ablate` command line. Heavy imports (torch, timm) happen inside commands that need them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ablate.config.errors import StudyError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Architecture ablation studies of ConvNets: one YAML study file, one command.\n\n"
         "A study names a base network, the variants to compare (steps, variants, a grid or a search), the data "
         "and the training recipe. See studies/ for examples and README.md for the field reference.",
)

def _print_version(value: bool) -> None:
    if value:
        from ablate import __version__

        print(f"ablate {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                    help="Print ablate's version and exit.")] = False) -> None:
    """Architecture ablation studies of ConvNets."""


StudyArg = Annotated[Path, typer.Argument(help="The study file (YAML).", show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="KEY=VALUE",
    help="Override a study field by dotted path, value parsed as YAML (repeatable), "
         "e.g. --set recipe.epochs=1 --set data.train_subset=2000.")]


AllowLargeOpt = Annotated[bool, typer.Option(
    "--allow-large", help="Build networks beyond the size limits (5 billion parameters, 1 TiB of activations per "
    "training step, both estimated from the study), on hardware that takes them.")]


def _check_sizes(loaded, allow_large: bool) -> None:
    if not allow_large:
        from ablate.config.checks import check_sizes

        check_sizes(loaded)


@app.command()
def validate(study: StudyArg, set_: SetOpt = None, allow_large: AllowLargeOpt = False) -> None:
    """Check a study file and print a one-line summary (or the one-line error, exit code 2)."""
    from ablate.config.load import load_study

    loaded = load_study(study, set_ or [])
    _check_sizes(loaded, allow_large)
    s = loaded.study
    seeds = len(s.seeds)
    if s.search is not None and s.search.sampler != "grid":
        print(f"{loaded.file}: ok: study '{s.name}', search ({s.search.sampler} sampler, {s.search.trials} trials "
              f"over {', '.join(s.search.space)}, seed {s.seeds[0]}); data {s.data.dataset} "
              f"@{s.data.resolved('image_size')}px, recipe {s.recipe.preset}, {s.recipe.epochs} epochs")
        return
    print(f"{loaded.file}: ok: study '{s.name}', {len(loaded.variants)} variants ({loaded.kind}) x {seeds} "
          f"seed{'s' * (seeds != 1)} = {len(loaded.variants) * seeds} trials; data {s.data.dataset} "
          f"@{s.data.resolved('image_size')}px, recipe {s.recipe.preset}, {s.recipe.epochs} epochs")


@app.command()
def flops(
    study: StudyArg,
    set_: SetOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
    breakdown: Annotated[bool, typer.Option(help="Add GFLOPs per part (stem, stage1..N, head) at the paper's size.")]
    = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Count again instead of reading the cache.")] = False,
    allow_large: AllowLargeOpt = False,
) -> None:
    """FLOPs and parameters of every variant, without training.

    gflops: at the paper's scale (unscaled network, measure.flops_image_size, 3 channels, 1000 classes;
    one multiply-add = one FLOP, counted by fvcore in eval mode). gflops_train: the network as trained
    (after `scale:`, at the data's image size, channels and classes). Counts are cached.
    changes: every resolved network/recipe/data field that differs from the previous step (or, for
    variants and grids, from the first variant); in full with --format json or csv.
    """
    if format not in ("table", "csv", "json"):
        raise StudyError("--format", "", f"unknown format '{format}'; valid: table, csv, json")
    from ablate.config.load import changes_text, load_study

    loaded = load_study(study, set_ or [])
    _check_sizes(loaded, allow_large)
    rows = _count(loaded, use_cache=not no_cache)
    if format == "json":
        print(json.dumps(rows, indent=1))
        return
    import pandas as pd

    if not rows:  # a tpe/random search: its variants are sampled while it runs
        print(f"{study}: a {loaded.study.search.sampler} search samples its variants while it runs: nothing to count "
              "before `ablate run` (its status and report show each sampled variant's FLOPs)", file=sys.stderr)
        return
    df = pd.DataFrame(rows)
    if breakdown and "breakdown" in df:
        parts = pd.DataFrame([b if isinstance(b, dict) else {} for b in df["breakdown"]]).add_prefix("gflops_")
        df = pd.concat([df, parts], axis=1)
    df = df.drop(columns=["breakdown"], errors="ignore")
    df["changes"] = [changes_text({k: tuple(ab) for k, ab in (c or {}).items()}, limit=50 if format == "csv" else 3)
                     for c in df["changes"]]
    if format == "csv":
        df.to_csv(sys.stdout, index=False)
        return
    cols = ["name", "group", "id", "params", "gflops", "gflops_train", "ref_gflops"]
    cols[4:4] = ["width_mult"] if df["width_mult"].notna().any() else []  # `match:`: the solved multiplier
    cols += [c for c in df.columns if c.startswith("gflops_") and c != "gflops_train"]
    if df["ref_gflops"].isna().all():
        cols.remove("ref_gflops")
    if df["changes"].astype(bool).any():
        cols.append("changes")
    show = df[cols].copy()
    show["group"] = show["group"].fillna("-")
    show["params"] = show["params"].map(lambda p: f"{int(p):,}" if p == p and p is not None else "-")
    if "changes" in show:  # text reads left-aligned: pad the cells and the header to one width
        width = max(len("changes"), *map(len, show["changes"]))
        show["changes"] = show["changes"].str.ljust(width)
        show = show.rename(columns={"changes": "changes".ljust(width)})
    print(show.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.3f}"))


StorageOpt = Annotated[str | None, typer.Option(
    help="optuna storage URL shared by all workers (e.g. postgresql://user@host/db, sqlite:///ledger.db) "
         "or a journal file path; default: results/<study>/ledger.journal.")]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Folder holding results/<study>/.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cuda, cuda:1, mps or cpu; default: the best available.")]
HeartbeatOpt = Annotated[int | None, typer.Option(
    "--heartbeat", min=0, metavar="SECONDS",
    help="RDB storages (postgresql://...): a running trial records a heartbeat this often; a trial whose worker "
         "stops sending them is failed and retried by a live worker. Default 30; 0 turns heartbeats off. "
         "Ignored for journal files (a dead local worker is found by its pid).")]
GraceOpt = Annotated[int | None, typer.Option(
    "--grace", min=1, metavar="SECONDS",
    help="Seconds without a heartbeat before a running trial counts as dead. Default: 4x --heartbeat.")]
MaxRetryOpt = Annotated[int, typer.Option(
    "--max-retry", min=0, help="How often a trial whose worker died is retried automatically (RDB storages).")]
TensorboardOpt = Annotated[Path | None, typer.Option(
    "--tensorboard", help="Also write each trial's per-epoch metrics as TensorBoard scalars under this folder "
    "(DIR/<study>/<trial id>; needs `pip install 'ablate[tensorboard]'`). Optuna's learning curves are kept "
    "either way.")]
LingerOpt = Annotated[bool, typer.Option(
    help="When the queue is empty but trials still run on other workers, keep polling (every heartbeat) to retry "
         "them should their worker die; --no-linger exits at once.")]


@app.command()
def run(
    study: StudyArg,
    set_: SetOpt = None,
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes (CPU threads are split between "
                                         "them; on a GPU box one GPU each).")] = 1,
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
) -> None:
    """Train and evaluate every variant x seed of a study, then write results/<study>/results.csv.

    Idempotent: what is complete is never trained again, an interrupted trial continues from its last
    epoch checkpoint, failed trials keep their reason (re-run them with --retry-failed).
    """
    from ablate.config.load import load_study

    loaded = load_study(study, set_ or [])
    _check_sizes(loaded, allow_large)
    from ablate.sweep.ledger import Ledger, safe_url
    from ablate.sweep.results import write_results
    from ablate.sweep.states import Status
    from ablate.sweep.worker import WorkerOptions, run_workers, study_counts, work

    if not enqueue_only:
        _check_device(device)  # before anything is written (the count cache included); no torch op runs
        _check_tensorboard(tensorboard)
    counts = _count(loaded, use_cache=True)  # first: its worker processes fork before any torch op runs here
    if not enqueue_only:
        _check_data(loaded)
    ledger = Ledger(loaded, storage, results, heartbeat, grace, max_retry)
    ledger.expect_current_data()  # results trained on other data (data.root changed) are trained again
    queued = ledger.sync(retry_failed=retry_failed)
    total = loaded.study.search.trials if ledger.search is not None else len(ledger.by_key)
    print(f"{loaded.name}: {total} trials, {queued[Status.DONE]} already done, {queued[Status.QUEUED]} queued "
          f"(ledger: {safe_url(storage) or ledger.dir / 'ledger.journal'})", file=sys.stderr)
    write_results(ledger, counts)
    if enqueue_only:
        return
    opts = WorkerOptions(storage=storage, results_root=results, device=device, heartbeat=heartbeat, grace=grace,
                         max_retry=max_retry, linger=linger, tensorboard=tensorboard)
    codes = [0]
    if workers == 1:
        work(loaded, opts)
    else:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=queued[Status.DONE], desc="trials", unit="trial", file=sys.stderr, disable=None)

        def poll() -> None:
            bar.n = ledger.progress()[0]
            bar.refresh()

        try:
            codes = run_workers(loaded, set_ or [], workers, opts, on_poll=poll)
        finally:
            bar.close()
    path = write_results(ledger, None if ledger.search is not None else study_counts(loaded))
    _print_status(ledger)
    print(f"results: {path}", file=sys.stderr)
    if 2 in codes:
        raise typer.Exit(2)  # a worker stopped on an environment fault (its line is above)
    if 130 in codes:
        raise KeyboardInterrupt
    _exit_summary(ledger, study)


def _exit_summary(ledger, study: Path) -> None:
    """Exit 1 with a one-line summary unless every trial asked for is done."""
    from ablate.sweep.results import results_frame
    from ablate.sweep.states import Status

    df = results_frame(ledger)
    total = ledger.search.trials if ledger.search is not None else len(df)
    done = int((df["status"] == Status.DONE).sum())
    if done >= total:
        return
    counts = df[df["status"] != Status.DONE]["status"].value_counts().to_dict()
    parts = ", ".join(f"{n} {k}" for k, n in counts.items())
    hint = " (see `ablate status`; --retry-failed trains failed ones again)" if counts.get(Status.FAILED) else ""
    print(f"{study}: {done} of {total} trials done; {parts or f'{total - done} not run'}{hint}", file=sys.stderr)
    raise typer.Exit(1)


@app.command()
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
    _check_sizes(loaded, allow_large)
    _check_device(device)
    _check_tensorboard(tensorboard)
    stats = work(loaded, WorkerOptions(storage=storage, results_root=results, device=device, max_trials=max_trials,
                                       heartbeat=heartbeat, grace=grace, max_retry=max_retry, linger=linger,
                                       nproc=nproc_per_node, tensorboard=tensorboard))
    failed, ran = stats[Status.FAILED], stats[Status.DONE] + stats[Status.FAILED]
    if failed:
        print(f"{study}: {failed} of {ran} trials this worker ran failed (see `ablate status`)", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def status(study: StudyArg, set_: SetOpt = None, storage: StorageOpt = None,
           results: ResultsOpt = Path("results"), heartbeat: HeartbeatOpt = None, grace: GraceOpt = None) -> None:
    """Done / running / failed / queued trials of a study, and the best so far.

    A trial whose worker died reads as interrupted: on this machine's journal when its process is gone; on an
    RDB storage when it sent no heartbeat for the grace period (give the workers' --heartbeat/--grace)."""
    from ablate.config.load import load_study
    from ablate.sweep.ledger import Ledger

    loaded = load_study(study, set_ or [])
    ledger = Ledger(loaded, storage, results, heartbeat, grace, readonly=True)  # reads only: writes nothing
    ledger.expect_current_data()
    _print_status(ledger, to=sys.stdout)


OutOpt = Annotated[Path, typer.Option("--out", help="Folder holding reports/<study>/ (written).")]


@app.command()
def report(study: StudyArg, set_: SetOpt = None, storage: StorageOpt = None, results: ResultsOpt = Path("results"),
           out: OutOpt = Path("reports")) -> None:
    """Charts and a report (report.md, self-contained report.html) of results/<study>/ into reports/<study>/.

    Roadmap or grid/search charts, accuracy vs GFLOPs and vs throughput with the Pareto front, training curves,
    the table with changes vs the previous step and the paper, seed-noise flags, Spearman agreement.

    Works while a study is still running or has failed trials: those rows are shown as such.
    """
    from ablate.config.load import load_study
    from ablate.report import write_report

    loaded = load_study(study, set_ or [])
    for path in write_report(loaded, results, out, storage):
        print(path)


@app.command()
def compare(studies: Annotated[list[Path], typer.Argument(help="Two or more study files (YAML).", show_default=False)],
            storage: StorageOpt = None, results: ResultsOpt = Path("results"), out: OutOpt = Path("reports"),
            name: Annotated[str | None, typer.Option(help="Name of the comparison (reports/compare-<name>/); "
                                                     "default: the study names joined by '-'.")] = None) -> None:
    """Several studies side by side (e.g. one roadmap under proxies of different budgets): per step the mean
    and 95 % interval of each, the paper's value, Spearman rho with the paper (levels and changes) with
    bootstrap intervals, the paper's sign on the big steps, and each study's cost (trained images,
    trial-seconds, wall). Writes reports/compare-<name>/compare.md, compare.html, compare.png, compare.csv.

    Steps are matched by name; steps not shared by every study are listed. A study never run is an error
    (exit 2) and nothing is written.
    """
    from ablate.config.load import load_study
    from ablate.report.compare import write_compare

    if len(studies) < 2:
        raise StudyError(str(studies[0]) if studies else "compare", "", "give at least two study files to compare")
    loaded = [load_study(s) for s in studies]
    names = [s.name for s in loaded]
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise StudyError(str(studies[names.index(dup)]), "name", f"'{dup}' is given twice: compare different studies")
    for path in write_compare(loaded, results, out, name, storage):
        print(path)


def _check_data(loaded) -> None:
    """Every dataset of the study can be read, before anything is written (a missing dataset is a
    one-line error, not a ledger full of failed trials)."""
    import json

    from ablate.train.data import DataError, load_data

    seen: set[str] = set()
    for v in loaded.variants:
        key = json.dumps(v.data.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        if v.data.dataset == "imagefolder":  # scanning ImageNet's folders takes minutes: check they exist
            root = Path(v.data.root or "")
            missing = [s for s in ("train", "val") if not v.data.root or not (root / s).is_dir()]
            if missing:
                raise StudyError(loaded.file, "data.root", f"imagefolder needs {root}/train and {root}/val "
                                 f"class folders ({root / missing[0]} is missing)")
            continue
        try:
            load_data(v.data, v.recipe, 0, "cpu")
        except DataError as e:
            raise StudyError(loaded.file, "data", str(e)) from None


def _check_tensorboard(folder: Path | None) -> None:
    """--tensorboard without the package is a one-line error before anything is trained."""
    if folder is None:
        return
    from ablate.sweep.tensorboard import available

    if not available():
        raise StudyError("--tensorboard", "", "needs the tensorboard package: pip install 'ablate[tensorboard]'")
    if folder.exists() and not folder.is_dir():
        raise StudyError("--tensorboard", "", f"{folder} is not a folder")


def _check_device(device: str | None) -> None:
    """A --device that cannot train is a one-line error before anything is queued or trained."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise StudyError("--device", "", f"'{device}' is not a device; valid: cpu, cuda, cuda:N, mps") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise StudyError("--device", "", f"'{device}': no CUDA GPU is available on this machine")
        if dev.index is not None and dev.index >= n:
            raise StudyError("--device", "", f"'{device}': this machine has {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise StudyError("--device", "", f"'{device}': MPS is not available on this machine")
    elif dev.type != "cpu":
        raise StudyError("--device", "", f"'{device}': {dev.type} devices are not supported; valid: cpu, cuda, "
                         "cuda:N, mps")


def _print_status(ledger, to=None) -> None:
    from ablate.sweep.results import results_frame
    from ablate.sweep.states import Status

    to = to or sys.stderr  # looked up now: sys.stderr may have been replaced since import

    df = results_frame(ledger)
    counts = df["status"].value_counts().to_dict()
    line = Status.counts_line(counts)  # every status with a trial, in display order (skipped ones too)
    print(f"{ledger.loaded.name}: {len(df)} trials: {line}", file=to)
    cols = ["name", "seed", "status", "attempts", "top1", "epochs", "fail_reason"]
    show = df[cols].copy()
    show["fail_reason"] = show["fail_reason"].fillna("").astype(str).str.slice(0, 60)
    notes = _retry_notes(ledger)
    if any(notes.get(k) for k in df["trial_id"]):
        show["note"] = [notes.get(k, "")[:70] for k in df["trial_id"]]
    print(show.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}"), file=to)
    done = df[df["status"] == Status.DONE]
    if not done.empty:
        best = done.loc[done["top1"].idxmax()]
        print(f"best so far: {best['name']} (seed {best['seed']}): top-1 {best['top1']:.2f}", file=to)
    note = ledger.version_note()
    if note:
        print(note, file=to)
    if counts.get(Status.STALE):
        print(f"note: {counts[Status.STALE]} finished trial(s) were trained on other data than data.root holds now "
              "(stale): `ablate run` trains them again", file=to)


def _retry_notes(ledger) -> dict[str, str]:
    """Trial id -> 'retried after: <why the previous attempt failed>' for trials with an earlier failed attempt."""
    notes = {}
    for key, attempts in ledger.history().items():
        failed = [t for t in attempts[:-1] if t.state.name == "FAIL"]
        if failed:
            n = f" ({len(failed)} failed attempts)" if len(failed) > 1 else ""
            notes[key] = f"retried{n} after: {failed[-1].user_attrs.get('fail_reason', 'failure')}"
    return notes


def _count(loaded, use_cache: bool) -> list[dict]:
    from tqdm import tqdm

    from ablate.measure.table import count_study

    bar: list[tqdm] = []

    def progress(done: int, total: int, name: str) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc="counting", unit="net", file=sys.stderr, disable=None, leave=False))
        bar[0].n = done
        bar[0].set_postfix_str(name[:30], refresh=True)

    try:
        return count_study(loaded, progress, use_cache=use_cache)
    finally:
        if bar:
            bar[0].close()


def main() -> None:
    """Entry point: user errors are one line on stderr and exit code 2, never a traceback. SIGTERM (what a
    scheduler sends on pre-emption) is handled like Ctrl-C: the running trial is marked interrupted, exit 130."""
    import os
    import signal

    pid = os.getpid()

    def on_sigterm(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked helper (the FLOPs counting pool): die as by default
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        code = app(standalone_mode=False)  # click's usage errors come here too: one line, not a framed box
    except StudyError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # the environment: a full or read-only disk, a lost file system
        where = f"{e.filename}: " if e.filename else ""
        print(f"{where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # data problems are user errors too, but live in the (torch-importing) train package
        kinds = {c.__name__ for c in type(e).__mro__}
        if "DataError" in kinds:
            print(e, file=sys.stderr)
            sys.exit(2)
        if "Abort" in kinds:  # click's name for Ctrl-C
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        if "NoArgsIsHelpError" in kinds:  # plain `ablate`: the help
            e.show()  # type: ignore[attr-defined]
            sys.exit(2)
        if "ClickException" in kinds:  # a bad option or argument
            ctx = getattr(e, "ctx", None)
            print(f"{ctx.command_path if ctx else 'ablate'}: {e.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
            sys.exit(getattr(e, "exit_code", 2))
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
