"""Seeds where the verdict is open (`evidence.max_seeds`): `ablate run` adds rounds of seeds to the variants
of undetermined changes, the rounds live in the ledger, and a killed run continues the same plan."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.states import State

pytestmark = pytest.mark.slow  # end to end: `ablate run` subprocesses

STUDY = """
name: rounds
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16, train_subset: 256, val_subset: 128}
recipe: {preset: classic, epochs: 2, batch_size: 32, warmup_epochs: 0, lr: 0.05}
seeds: [0, 1]
evidence: {max_seeds: 4, round_seeds: 1}
steps:
  - {name: base}
  - {name: smooth, set: {recipe.label_smoothing: 0.05}}
  - {name: k5, set: {kernel_size: 5}}
"""


def _attempts(path: Path, results: Path) -> dict[str, list[State]]:
    led = Ledger(load_study(path), LedgerOptions(None, results, readonly=True))
    out: dict[str, list[State]] = {}
    for t in led.trials():
        out.setdefault(t.user_attrs["trial_id"], []).append(t.state)
    return out


def test_rounds_resume_after_a_kill_and_finish_the_same_plan(tmp_path: Path) -> None:
    path = tmp_path / "rounds.yaml"
    path.write_text(STUDY)
    results = tmp_path / "results"
    env = {**os.environ, "ABLATE_WORKERS": "1"}
    cmd = [sys.executable, "-m", "ablate", "run", str(path), "--results", str(results)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # two looks can never settle a change with 2 seeds (1 degree of freedom at alpha ~0.003): round 1 always comes
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (results / "rounds" / "ledger.journal").exists():
            running = {k for k, states in _attempts(path, results).items() if State.RUNNING in states}
            if any(k.endswith("-s2") for k in running):
                break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("round 1 never started: " + proc.communicate()[1][-2000:])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = run_cli("run", str(path), "--results", str(results), cwd=tmp_path, env={"ABLATE_WORKERS": "1"})
    assert again.returncode == 0, again.stderr[-2000:]
    assert "as seeds are added where a verdict stays open (evidence.max_seeds 4)" in again.stderr
    attempts = _attempts(path, results)
    done = {k for k, states in attempts.items() if states.count(State.COMPLETE) == 1}
    assert all(states.count(State.COMPLETE) <= 1 for states in attempts.values())  # nothing trained twice
    df = pd.read_csv(results / "rounds" / "results.csv")
    assert set(df["trial_id"]) == done and (df["status"] == "done").all()
    assert {0, 1, 2} <= set(df["seed"]) and df.loc[df["seed"] == 2, "round"].eq(1).all()
    assert df.loc[df["round"] > 0, "seeded_because"].str.match(r"round \d: '(smooth|k5)' undetermined").all()
    # the plan of the finished ledger asks for nothing more
    led = Ledger(load_study(path), LedgerOptions(None, results))
    assert led.next_round() == 0 and set(led.known()) == done
    summary = pd.read_csv(results / "rounds" / "summary.csv")
    judged = summary[summary["delta_vs"].notna()]
    assert set(judged["verdict"]) <= {"helped", "hurt", "undetermined"} and (judged["family"] == 2).all()
    assert judged["look"].min() >= 1 and judged["p_adj"].notna().all()
    status = run_cli("status", str(path), "--results", str(results), cwd=tmp_path)
    assert status.returncode == 0 and " round " in status.stdout.splitlines()[1]
    assert "round 1: '" in status.stdout and "adaptive seeds (evidence.max_seeds 4)" in status.stdout
    assert re.search(r"max_seeds 4\): \d round\(s\) trained;", status.stdout), status.stdout  # finished: not "planned"
