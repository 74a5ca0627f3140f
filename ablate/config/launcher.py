"""The `launcher:` section of a study (or a `--launcher-config` file): how `ablate run --launcher slurm` puts
its workers on a SLURM cluster. Every field may also be given on the command line, which wins."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Launcher(BaseModel):
    """Where and how the workers of a study run on a cluster: one SLURM array task per worker."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    partition: str | None = Field(None, description="SLURM partition (sbatch --partition); default: the cluster's.")
    time: int = Field(60, ge=1, description="Minutes each worker job may run (sbatch --time); a worker near its "
                      "limit checkpoints its trial and is requeued.")
    workers: int = Field(1, ge=1, description="Worker jobs (array tasks) to submit.")
    gpus_per_worker: int = Field(0, ge=0, description="GPUs of each worker; more than one: each trial trains "
                                 "data-parallel on all of them (DDP, one process per GPU).")
    cpus_per_worker: int = Field(1, ge=1, description="CPU cores of each worker (sbatch --cpus-per-task).")
    mem_gb: int | None = Field(None, ge=1, description="Memory of each worker in GB (sbatch --mem).")
    account: str | None = Field(None, description="SLURM account to charge (sbatch --account).")
    sbatch: dict[str, str | int] = Field(default_factory=dict, description="Further sbatch options, by their "
                                         "long name without dashes (e.g. {qos: high, constraint: a100}).")
    network_journal: bool = Field(False, description="Allow a journal-file ledger on a network file system "
                                  "(NFS, Lustre, GPFS), where concurrent appends can corrupt it; use PostgreSQL.")

    def with_options(self, **given: object) -> Launcher:
        """This launcher with the options given on the command line (None: not given) in place of its own."""
        return Launcher.model_validate({**self.model_dump(), **{k: v for k, v in given.items() if v not in (None, {})}})
