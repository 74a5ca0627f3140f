"""`ablate run --launcher slurm`: queue the study, then submit its workers to SLURM as one job array and return.
The options here override the study's `launcher:` section and a `--launcher-config` file (`config.launcher`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

LauncherOpt = Annotated[Literal["local", "slurm"], typer.Option(
    "--launcher", help="local: train here (default); slurm: queue the study, submit --workers worker jobs as one "
    "SLURM job array (through submitit), print their job ids and return.")]
LauncherConfigOpt = Annotated[Path | None, typer.Option(
    "--launcher-config", exists=True, dir_okay=False, help="A YAML file of launcher settings (the fields of a "
    "study's `launcher:` section: partition, time, gpus_per_worker, ...); the options below override it.")]
PartitionOpt = Annotated[str | None, typer.Option(help="SLURM partition of the worker jobs.")]
TimeOpt = Annotated[int | None, typer.Option("--time", min=1, metavar="MINUTES", help="Time limit of each worker "
                                             "job (before it, a worker checkpoints its trial and is requeued).")]
GpusOpt = Annotated[int | None, typer.Option(min=0, help="GPUs per worker job (above 1: data-parallel trials).")]
CpusOpt = Annotated[int | None, typer.Option(min=1, help="CPU cores per worker job.")]
AccountOpt = Annotated[str | None, typer.Option(help="SLURM account the worker jobs are charged to.")]
SbatchOpt = Annotated[list[str] | None, typer.Option(
    "--sbatch", metavar="KEY=VALUE", help="A further sbatch option (repeatable), e.g. --sbatch qos=high.")]
NetworkJournalOpt = Annotated[bool, typer.Option(
    "--network-journal", help="Use a journal-file ledger on a network file system (NFS, Lustre, GPFS) anyway.")]


def launcher_spec(loaded, ledger_opts, config: Path | None, **given):
    """The study's `launcher:` section, then the --launcher-config file, then the command line's options; a ledger
    file on a network file system is refused here, before anything is written, unless they insist."""
    from ablate.config.errors import StudyError
    from ablate.config.launcher import Launcher
    from ablate.sweep.netfs import check_shared_ledger

    spec = loaded.study.launcher or Launcher()
    if config is not None:
        import yaml
        from pydantic import ValidationError

        try:
            spec = spec.with_options(**(yaml.safe_load(config.read_text()) or {}))
        except (yaml.YAMLError, ValidationError, TypeError) as e:
            raise StudyError(str(config), "", f"not a launcher config: {str(e).splitlines()[0]}") from None
    sbatch = {}
    for item in given.pop("sbatch") or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StudyError("--sbatch", "", f"'{item}' is not KEY=VALUE (e.g. --sbatch qos=high)")
        sbatch[key.lstrip("-")] = value
    spec = spec.with_options(**given, sbatch={**spec.sbatch, **sbatch} if sbatch else None)
    _check_slurm()
    check_shared_ledger(ledger_opts.storage, ledger_opts.study_dir(loaded.name), spec.network_journal)
    return spec


def launch(loaded, overrides: list[str], ledger_opts, spec, device: str | None) -> None:
    """Submit the workers as one job array; print their job ids."""
    from ablate.sweep.slurm import submit

    study_dir = ledger_opts.study_dir(loaded.name)
    ids = submit(str(loaded.file), overrides, ledger_opts, study_dir, loaded.name, spec, device)
    for job in ids:
        print(job)
    print(f"{loaded.name}: submitted {len(ids)} worker job(s) (array {ids[0].split('_')[0]}, logs in "
          f"{study_dir / 'slurm'}); `ablate status` shows them beside the trials", file=sys.stderr)


def _check_slurm() -> None:
    """submitit installed and sbatch on the PATH, before anything is queued."""
    import importlib.util
    import shutil

    from ablate.config.errors import StudyError

    if importlib.util.find_spec("submitit") is None:
        raise StudyError("--launcher slurm", "", "needs submitit: pip install 'ablate[slurm]'")
    if shutil.which("sbatch") is None:
        raise StudyError("--launcher slurm", "", "sbatch is not on the PATH (run it where SLURM jobs are submitted)")
