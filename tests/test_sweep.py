"""`ablate run` on the optuna ledger: failures recorded, idempotent re-runs, crashes, parallel workers."""

from __future__ import annotations

import os
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

pytestmark = pytest.mark.slow  # end to end: `ablate run` subprocesses, workers, signals (CI runs them)

TINY = """
name: {name}
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {{dataset: synthetic, image_size: 16, train_subset: {n}, val_subset: 128}}
recipe: {{preset: classic, epochs: {epochs}, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
"""


def study(tmp_path: Path, name: str, variants: str, epochs: int = 2, n: int = 256) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, epochs=epochs, n=n) + "variants:\n" + variants)
    return path


def ledger_states(path: Path, results: Path) -> dict[str, list[str]]:
    """trial id -> the states of all its attempts."""
    led = Ledger(load_study(path), LedgerOptions(None, results))
    out: dict[str, list[str]] = {}
    for t in led.trials():
        out.setdefault(t.user_attrs["trial_id"], []).append(t.state.name)
    return out


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    path = study(tmp_path, "fails", """
  - {name: a}
  - {name: raises, set: {recipe.opt: fusedadam}}  # timm's, but needs CUDA: raises in the trial
  - {name: diverges, set: {recipe.lr: 1.0e+30}}
  - {name: b, set: {kernel_size: 5}}
""")
    results = tmp_path / "results"
    r = run_cli("run", str(path), "--results", str(results), cwd=tmp_path)
    assert r.returncode == 1, r.stderr  # the sweep went on, but not everything asked for is done
    assert r.stderr.strip().splitlines()[-1].startswith(f"{path}: 2 of 4 trials done; 2 failed")
    df = pd.read_csv(results / "fails" / "results.csv")
    assert list(df["name"]) == ["a", "raises", "diverges", "b"]
    status = dict(zip(df["name"], df["status"], strict=True))
    assert status == {"a": "done", "raises": "failed", "diverges": "failed", "b": "done"}
    reasons = dict(zip(df["name"], df["fail_reason"].fillna(""), strict=True))
    assert "CUDA required" in reasons["raises"]
    assert "nan" in reasons["diverges"].lower() and "epoch" in reasons["diverges"]
    assert df.loc[df.name == "a", "top1"].item() > 10  # 10 classes: above chance
    assert (df.loc[df.status == "done", "epochs"] == 2).all()
    for name in ("a", "b"):
        trial = df.loc[df.name == name, "trial_id"].item()
        metrics = pd.read_csv(results / "fails" / "trials" / trial / "metrics.csv")
        assert list(metrics["epoch"]) == [1, 2]
    assert (results / "fails" / "results.parquet").exists() and (results / "fails" / "summary.csv").exists()

    # a second run trains nothing: failures by their own fault are not retried without --retry-failed
    before = ledger_states(path, results)
    start = time.time()
    r = run_cli("run", str(path), "--results", str(results), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert ledger_states(path, results) == before
    assert time.time() - start < 30
    # --retry-failed queues the failed ones again (and they fail again, with their reason)
    r = run_cli("run", str(path), "--results", str(results), "--retry-failed", cwd=tmp_path)
    states = ledger_states(path, results)
    assert sorted(len(v) for v in states.values()) == [1, 1, 2, 2]
    r = run_cli("status", str(path), "--results", str(results), cwd=tmp_path)
    assert r.returncode == 0 and "2 done" in r.stdout and "2 failed" in r.stdout


def test_killed_worker_then_rerun_completes_everything_once(tmp_path: Path) -> None:
    path = study(tmp_path, "kill", "".join(f"  - {{name: v{i}, set: {{kernel_size: {k}}}}}\n"
                                           for i, k in enumerate((1, 3, 5))), epochs=3, n=2048)
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(results)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials = results / "kill" / "trials"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once the first trial has written an epoch
        if any(trials.glob("*/metrics.csv")):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no trial started within 120 s")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    led = Ledger(load_study(path), LedgerOptions(None, results, readonly=True))
    raw = [t for t in led.store.trials() if t.state.name == "RUNNING"]
    assert len(raw) == 1  # the killed trial is left running in the ledger, but reads as died (resumable)
    (seen,) = [t for t in led.trials() if t.number == raw[0].number]
    assert seen.state.name == "FAIL" and seen.user_attrs["fail_kind"] == "died"
    r = run_cli("status", str(path), "--results", str(results), cwd=tmp_path)
    assert r.returncode == 0 and "1 interrupted" in r.stdout and "running" not in r.stdout

    r = run_cli("run", str(path), "--results", str(results), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    states = ledger_states(path, results)
    assert len(states) == 3
    assert all(s.count("COMPLETE") == 1 for s in states.values()), states
    assert "RUNNING" not in sum(states.values(), [])
    df = pd.read_csv(results / "kill" / "results.csv")
    assert (df["status"] == "done").all() and (df["epochs"] == 3).all()


def test_two_workers_share_the_journal_without_duplicates(tmp_path: Path) -> None:
    path = study(tmp_path, "par", "".join(f"  - {{name: v{i}, set: {{kernel_size: {k}, drop_path: {d}}}}}\n"
                                          for i, (k, d) in enumerate([(1, 0), (3, 0), (5, 0), (1, 0.1), (3, 0.1),
                                                                      (5, 0.1)])), epochs=1)
    results = tmp_path / "results"
    r = run_cli("run", str(path), "--results", str(results), "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    states = ledger_states(path, results)
    assert len(states) == 6
    assert all(s == ["COMPLETE"] for s in states.values()), states  # each exactly once, nothing lost
    led = Ledger(load_study(path), LedgerOptions(None, results))
    pids = {t.user_attrs["pid"] for t in led.trials()}
    assert len(pids) == 2  # both workers did work
    df = pd.read_csv(results / "par" / "results.csv")
    assert (df["status"] == "done").all()
    assert list(pd.read_csv(results / "par" / "summary.csv")["n"]) == [1] * 6  # written by `ablate run` itself


def test_without_workers_a_cpu_trains_one_trial_per_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ablate.sweep.devices import MAX_AUTO_WORKERS

    monkeypatch.delenv("ABLATE_WORKERS")
    path = study(tmp_path, "auto", "".join(f"  - {{name: v{k}{d}, set: {{kernel_size: {k}, drop_path: {d}}}}}\n"
                                           for k in (1, 3, 5) for d in (0, 0.1)), epochs=1, n=1024)
    results = tmp_path / "results"
    r = run_cli("run", str(path), "--results", str(results), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    n = min(os.cpu_count() or 1, MAX_AUTO_WORKERS)
    led = Ledger(load_study(path), LedgerOptions(None, results))
    assert all(t.state.name == "COMPLETE" for t in led.trials()) and len(led.trials()) == 6
    assert len({t.user_attrs["pid"] for t in led.trials()}) == n  # n processes trained


def test_interrupted_trial_continues_from_its_checkpoint(tmp_path: Path) -> None:
    path = study(tmp_path, "resume", "  - {name: long}\n", epochs=4, n=2048)
    results = tmp_path / "results"
    # Ctrl-C as a terminal sends it: with SIGINT's default action, whatever the test runner was started with (a
    # background job of a non-interactive shell inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: the trial would finish and exit 0)
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(results)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = None
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list((results / "resume" / "trials").glob("*/metrics.csv"))
        if found and len(pd.read_csv(found[0])) >= 1 and any(found[0].parent.glob("checkpoint*")):
            metrics = found[0]
            break
        time.sleep(0.2)
    assert metrics is not None, "no epoch finished within 120 s"
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in err
    before = pd.read_csv(metrics)
    assert 1 <= len(before) < 4
    r = run_cli("run", str(path), "--results", str(results), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = pd.read_csv(metrics)
    assert list(rows["epoch"]) == [1, 2, 3, 4]
    # the epochs finished before the interruption were not trained again: their rows are untouched
    pd.testing.assert_frame_equal(rows.iloc[: len(before)], before)
    df = pd.read_csv(results / "resume" / "results.csv")
    assert df["status"].item() == "done" and df["epochs"].item() == 4
    states = ledger_states(path, results)
    assert list(states.values())[0] == ["FAIL", "COMPLETE"]  # the interrupted attempt, then the resumed one


def test_search_samples_with_optuna_and_records_every_trial(tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(TINY.format(name="search", epochs=1, n=128) + """
search:
  sampler: random
  trials: 3
  seed: 1
  space:
    kernel_size: [1, 3, 5]
    recipe.lr: {low: 1.0e-3, high: 1.0e-1, log: true}
""")
    results = tmp_path / "results"
    r = run_cli("run", str(path), "--results", str(results), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    led = Ledger(load_study(path), LedgerOptions(None, results))
    done = [t for t in led.trials() if t.state.name == "COMPLETE"]
    assert len(done) == 3
    assert all(set(t.params) == {"kernel_size", "recipe.lr"} for t in done)  # optuna saw the parameters
    assert all(t.value == t.user_attrs["top1"] for t in done)
    df = pd.read_csv(results / "search" / "results.csv")
    assert len(df) == 3 and (df["status"] == "done").all()
    assert set(df["kernel_size"]) <= {1, 3, 5} and df["params"].notna().all()
    r = run_cli("run", str(path), "--results", str(results), cwd=tmp_path)  # the budget is spent: nothing new
    assert r.returncode == 0 and len(Ledger(load_study(path), LedgerOptions(None, results)).trials()) == 3
