"""The states of a study's SLURM worker jobs (recorded in results/<study>/slurm/jobs.json by `slurm.submit`), read
with squeue, for `ablate status`. No submitit needed: reading them works wherever squeue runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def jobs_file(study_dir: Path) -> Path:
    return study_dir / "slurm" / "jobs.json"


def job_states(study_dir: Path) -> dict[str, str]:
    """The recorded jobs' states as squeue shows them (job id -> state, e.g. RUNNING, PENDING (BeginTime)); a job
    squeue no longer lists reads `ended`. Empty when none was submitted; unknown when squeue cannot be run."""
    path = jobs_file(study_dir)
    ids = json.loads(path.read_text()) if path.is_file() else []
    if not ids:
        return {}
    base = sorted({i.split("_")[0] for i in ids})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(base), "-o", "%i|%T|%r"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return dict.fromkeys(ids, "unknown (squeue not available)")
    seen = {}
    for line in out.splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        seen[job] = f"{state} ({reason})" if state == "PENDING" and reason not in ("", "None") else state
    return {i: seen.get(i, "ended") for i in ids}


def print_jobs(study_dir: Path, to=None) -> None:
    """`slurm jobs: 12_0 RUNNING, 12_1 PENDING (BeginTime)`, when the study's workers were submitted to SLURM."""
    states = job_states(study_dir)
    if states:
        print("slurm jobs: " + ", ".join(f"{job} {state}" for job, state in states.items()), file=to or sys.stderr)
