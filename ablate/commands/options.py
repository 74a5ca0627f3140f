"""Arguments and options shared by several commands (typer `Annotated` types)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StudyArg = Annotated[Path, typer.Argument(help="The study file (YAML).", show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="KEY=VALUE",
    help="Override a study field by dotted path, value parsed as YAML (repeatable), "
         "e.g. --set recipe.epochs=1 --set data.train_subset=2000.")]


AllowLargeOpt = Annotated[bool, typer.Option(
    "--allow-large", help="Build networks beyond the size limits (5 billion parameters, 1 TiB of activations per "
    "training step, both estimated from the study), on hardware that takes them.")]


def _storage(url: str | None) -> str | None:
    """--storage as given, its secrets learned first (no output shows them); a password with an unescaped '@'
    refused (a parser would take its second half for the host, and show it)."""
    from ablate.config.errors import StudyError
    from ablate.secrets import register, safe_url

    register(url)
    if url and "://" in url and url.split("://", 1)[1].partition("?")[0].count("@") > 1:
        raise StudyError("--storage", "", f"{safe_url(url)}: the password holds an '@': write it as %40")
    return url


StorageOpt = Annotated[str | None, typer.Option(
    callback=_storage, envvar="ABLATE_STORAGE", show_envvar=True,
    help="optuna storage URL shared by all workers (e.g. postgresql://user@host/db, sqlite:///ledger.db) "
         "or a journal file path; default: results/<study>/ledger.journal. A URL with a password is best given "
         "in ABLATE_STORAGE: the process list shows command lines.")]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Folder holding results/<study>/.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cuda, cuda:1, mps or cpu; default: the best available.")]
HeartbeatOpt = Annotated[int | None, typer.Option(
    "--heartbeat", min=0, metavar="SECONDS",
    help="RDB storages (postgresql://...): a running trial records a heartbeat this often; a trial whose worker "
         "stops sending them is failed and retried by a live worker. Default 30; 0 turns heartbeats off (SQLite "
         "only: on a server a dead worker's trial would never be retried). "
         "Ignored for journal files (a dead local worker is found by its pid).")]
GraceOpt = Annotated[int | None, typer.Option(
    "--grace", min=1, metavar="SECONDS",
    help="Seconds without a heartbeat before a running trial counts as dead (at least --heartbeat). Default: 4x "
         "--heartbeat.")]
MaxRetryOpt = Annotated[int, typer.Option(
    "--max-retry", min=0, help="How often a trial whose worker died is retried automatically (RDB storages).")]
TensorboardOpt = Annotated[Path | None, typer.Option(
    "--tensorboard", help="Also write each trial's per-epoch metrics as TensorBoard scalars under this folder "
    "(DIR/<study>/<trial id>; needs `pip install 'ablate\\[tensorboard]'`). Optuna's learning curves are kept "
    "either way.")]
LingerOpt = Annotated[bool, typer.Option(
    help="When the queue is empty but trials still run on other workers, keep polling (every heartbeat) to retry "
         "them should their worker die; --no-linger exits at once.")]


OutOpt = Annotated[Path, typer.Option("--out", help="Folder holding reports/<study>/ (written).")]
