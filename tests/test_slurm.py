"""`ablate run --launcher slurm` on a real SLURM: a one-node cluster on localhost (`slurm_cluster.py`: Debian's
slurm-wlm and munge, started in a temporary folder). A study of 4 trials runs as 2 array tasks; while their trials
train, one task gets the signal SLURM sends before a time limit (submitit requeues it), the other is preempted
(`scontrol requeue`: SIGTERM, and SLURM requeues it). Each checkpoints its trial, and the trial resumes from
there. No SLURM installed: the test skips, except under CI (CI=1), where that fails."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli
from slurm_cluster import SlurmCluster, missing

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions

pytestmark = pytest.mark.slow

STUDY = """
name: onslurm
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16, train_subset: 2048, val_subset: 128}
recipe: {preset: classic, epochs: 5, batch_size: 32, warmup_epochs: 0, lr: 0.05}
launcher: {time: 10, cpus_per_worker: 1}
variants:
  - {name: a}
  - {name: b, set: {kernel_size: 5}}
  - {name: c, set: {expansion: 2.0}}
  - {name: d, set: {kernel_size: 1}}
"""
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    lacking = missing()
    if lacking:
        why = f"not installed: {', '.join(lacking)} (apt-get install slurm-wlm munge)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"the SLURM test needs SLURM under CI: {why}")
        pytest.skip(why)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def _wait(what: str, ready, timeout: float = 90.0, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = ready()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _training(log_dir: Path, task: str) -> str | None:
    """The trial id task `task` trains now (its log's last 'training' line)."""
    logs = list(log_dir.glob(f"{task}/*_log.err"))
    found = re.findall(r"\[([0-9a-f]+-s\d+)\] \S+ \(seed \d+\): training", logs[0].read_text()) if logs else []
    return found[-1] if found else None


def _epochs(trial: Path) -> list[int]:
    metrics = trial / "metrics.csv"
    return list(pd.read_csv(metrics)["epoch"]) if metrics.is_file() and metrics.stat().st_size else []


def _interrupt(cluster: SlurmCluster, study_dir: Path, task: str, how: list[str]) -> str:
    """`how` the task once the trial it trains is past its first epoch and before its fourth; the trial's id."""

    def training() -> str | None:
        key = _training(study_dir / "slurm", task)
        return key if key and 1 <= len(_epochs(study_dir / "trials" / key)) <= 3 else None

    key = _wait(f"task {task} to train past an epoch", training, every=0.05)
    cluster.run(*how, task)
    return key


def test_requeued_tasks_resume_their_trials_from_their_checkpoints(cluster: SlurmCluster, tmp_path: Path) -> None:
    path = tmp_path / "onslurm.yaml"
    path.write_text(STUDY)
    results = tmp_path / "results"
    env = {**cluster.env, **ENV}
    r = run_cli("run", str(path), "--launcher", "slurm", "--workers", "2", "--results", str(results),
                cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    tasks = r.stdout.split()
    assert len(tasks) == 2 and all(re.fullmatch(r"\d+_[01]", t) for t in tasks), r.stdout
    print(r.stdout, r.stderr)
    study_dir = results / "onslurm"

    # the signal SLURM sends ahead of a time limit to task 0, a preemption (SIGTERM, SLURM requeues) to task 1,
    # each while its trial trains, past its first epoch
    keys = [_interrupt(cluster, study_dir, tasks[0], ["scancel", "--signal=USR2"]),
            _interrupt(cluster, study_dir, tasks[1], ["scontrol", "requeue"])]
    for task in tasks:  # a requeued job waits (BeginTime) before it may start again: let it start now
        _wait("the requeue", lambda t=task: "BeginTime" in cluster.run("squeue", "-h", "-j", t, "-o", "%r").stdout)
        cluster.run("scontrol", "update", f"JobId={task}", "StartTime=now")
    status = run_cli("status", str(path), "--results", str(results), cwd=tmp_path, env=env)
    print(status.stdout)
    assert "slurm jobs: " in status.stdout and tasks[0] in status.stdout, status.stdout
    _wait("both tasks to end", lambda: not cluster.run("squeue", "-h").stdout.strip(), timeout=120, every=1.0)

    led = Ledger(load_study(path), LedgerOptions(None, results))
    attempts: dict[str, list] = {}
    for t in led.trials():
        attempts.setdefault(t.user_attrs["trial_id"], []).append(t)
    assert len(attempts) == 4
    for tid, tries in attempts.items():  # every trial done exactly once
        assert [t.state.name for t in tries].count("COMPLETE") == 1, (tid, [t.state.name for t in tries])
        assert _epochs(study_dir / "trials" / tid) == [1, 2, 3, 4, 5]  # each epoch trained once
    log = "".join(f.read_text() for f in sorted((study_dir / "slurm").glob("*/*_log.err")))
    for key in keys:  # whichever task is free first resumes an interrupted trial
        stopped = [t for t in attempts[key] if t.state.name == "FAIL"]
        assert [t.user_attrs.get("fail_kind") for t in stopped] == ["interrupted"], key
        resumed = re.search(rf"\[{key}\] resuming from \S+ at epoch (\d+)(, step \d+)?", log)
        assert resumed, log[-3000:]
        print(f"{key} resumed at {resumed.group(0).split(' at ')[-1]}")
        assert int(resumed.group(1)) >= 2  # not from scratch: epoch 1 was in the checkpoint
