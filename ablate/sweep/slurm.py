"""Workers on a SLURM cluster, through submitit (the one module that talks to it): `submit` sends a job array of
`SlurmWorker`s, one per worker, and records their ids in results/<study>/slurm/jobs.json (`slurm_status` reads
their states back for `ablate status`).

Each array task queues what the study misses (a resumable trial left by an earlier task included), then drains
the queue as `ablate worker` does. Before its time limit SLURM sends the task submitit's signal (USR2,
`signal_delay_s` ahead); on preemption it sends SIGTERM. Either stops the running trial at its next step: it writes
a checkpoint and is recorded interrupted (resumable). After USR2 the task then hands over to submitit's own
handler, which calls `SlurmWorker.checkpoint` and requeues the task (`scontrol requeue`); after SIGTERM it just
exits, and SLURM requeues a preempted task itself. The requeued task queues the interrupted trial again and
resumes it from its checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.slurm.slurm import SlurmJobEnvironment

from ablate.config.launcher import Launcher

from .options import LedgerOptions
from .slurm_status import jobs_file
from .storage import is_rdb_url

PREEMPT_SIGNAL = signal.Signals[f"SIG{SlurmJobEnvironment.USR_SIG}"]  # what submitit asks SLURM to send


@dataclass
class SlurmWorker(submitit.helpers.Checkpointable):
    """One worker job: `SlurmWorker(...)(index)` queues the study's missing trials and trains queued ones until
    none is left. Checkpointable: submitit resubmits it as it is (the ledger and the trial checkpoints hold the
    state)."""

    study: str
    overrides: list[str]
    ledger: LedgerOptions
    device: str | None = None
    nproc: int = 1

    def __call__(self, index: int) -> int:
        stop, got = threading.Event(), []

        def on_signal(signum: int, frame: Any) -> None:
            got.append(signum)
            stop.set()  # the trial checkpoints at its next step and is recorded interrupted
            print(f"task {index}: {signal.Signals(signum).name}: stopping (the trial is checkpointed, resumable)",
                  file=sys.stderr, flush=True)

        submitit_handler = signal.getsignal(PREEMPT_SIGNAL)
        signal.signal(PREEMPT_SIGNAL, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            return self._work(index, stop)
        except KeyboardInterrupt:  # the trial was stopped and recorded interrupted
            return 130
        finally:
            if PREEMPT_SIGNAL in got and callable(submitit_handler):
                submitit_handler(PREEMPT_SIGNAL, None)  # submitit: self.checkpoint(), requeue, exit

    def _work(self, index: int, stop: threading.Event) -> int:
        from ablate.config.load import load_study

        from .ledger import Ledger
        from .states import Status
        from .worker import WorkerOptions, work

        loaded = load_study(self.study, self.overrides)
        ledger = Ledger(loaded, self.ledger)
        ledger.expect_current_data()
        ledger.sync()  # an interrupted trial (this task's before its requeue, or another's) is queued again
        opts = WorkerOptions(ledger=self.ledger, device=self.device, nproc=self.nproc, progress=False,
                             log_prefix=f"task {index} ")
        stats = work(loaded, opts, stop)
        return 130 if stop.is_set() else 1 if stats[Status.FAILED] else 0


def executor(launcher: Launcher, folder: Path, name: str) -> submitit.SlurmExecutor:
    """A submitit executor of `launcher`'s jobs, logs under `folder`."""
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    extra = {k.replace("-", "_"): v for k, v in launcher.sbatch.items()}
    if launcher.account:
        extra["account"] = launcher.account
    ex.update_parameters(name=f"ablate-{name}", timeout_min=launcher.time, cpus_per_task=launcher.cpus_per_worker,
                         slurm_partition=launcher.partition, slurm_array_parallelism=launcher.workers,
                         slurm_additional_parameters=extra, tasks_per_node=1, nodes=1,
                         **({"gpus_per_node": launcher.gpus_per_worker} if launcher.gpus_per_worker else {}),
                         **({"mem_gb": launcher.mem_gb} if launcher.mem_gb else {}))
    return ex


def submit(study: str, overrides: list[str], ledger: LedgerOptions, study_dir: Path, name: str,
           launcher: Launcher, device: str | None = None) -> list[str]:
    """Submit `launcher.workers` worker jobs as one array; their job ids (also appended to jobs.json)."""
    if not is_rdb_url(ledger.storage) and ledger.storage:  # the jobs may start elsewhere than this folder
        ledger = ledger.replace(storage=str(Path(ledger.storage).resolve()))
    ledger = ledger.replace(results_root=ledger.results_root.resolve())
    worker = SlurmWorker(str(Path(study).resolve()), overrides, ledger, device, max(1, launcher.gpus_per_worker))
    folder = study_dir.resolve() / "slurm"
    try:
        jobs = executor(launcher, folder, name).map_array(worker, list(range(launcher.workers)))
    except (subprocess.CalledProcessError, FileNotFoundError, RuntimeError) as e:
        from ablate.config.errors import StudyError

        raise StudyError("--launcher slurm", "", f"sbatch failed: {str(e).strip().splitlines()[-1]}") from None
    ids = [j.job_id for j in jobs]
    path = jobs_file(study_dir)
    known = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps(known + ids) + "\n")
    return ids
