"""Real processes and real signals: SIGTERM is Ctrl-C in every process, and killing the parent of
`--workers N` leaves no worker training in the background."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.view import alive

pytestmark = pytest.mark.slow  # subprocesses, signals, servers: CI runs them, `-m "not slow"` skips them

LONG = """
name: {name}
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {{dataset: synthetic, image_size: 16, train_subset: 512, val_subset: 64}}
recipe: {{preset: classic, epochs: 40, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
variants:
  - {{name: a}}
  - {{name: b, set: {{kernel_size: 5}}}}
"""


def start(tmp_path: Path, name: str, *args: str) -> tuple[Path, subprocess.Popen]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(LONG.format(name=name))
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(tmp_path / "results"),
                             *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ABLATE_OFFLINE": "1"})
    return path, proc


def running_pids(path: Path, results: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> list[int]:
    """Wait until n trials are training (each has written an epoch); their workers' pids."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ablate run ended early: {proc.stderr.read() if proc.stderr else ''}")
        led = Ledger(load_study(path), LedgerOptions(None, results, readonly=True))
        running = [t for t in led.trials() if t.state.name == "RUNNING"]
        trained = [t for t in running if (led.dir / "trials" / t.user_attrs["trial_id"] / "metrics.csv").is_file()
                   and len((led.dir / "trials" / t.user_attrs["trial_id"] / "metrics.csv").read_text().splitlines())
                   > 1]
        if len(trained) >= n:
            return [int(t.user_attrs["pid"]) for t in trained]
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"{n} trial(s) did not start training within {timeout} s")


def wait_gone(pids: list[int], timeout: float = 60) -> list[int]:
    deadline = time.time() + timeout
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def kinds(path: Path, results: Path) -> list[str]:
    led = Ledger(load_study(path), LedgerOptions(None, results, readonly=True))
    return sorted(f"{t.state.name}:{t.user_attrs.get('fail_kind', '')}" for t in led.trials())


def test_sigterm_is_ctrl_c_for_a_single_worker(tmp_path: Path) -> None:
    path, proc = start(tmp_path, "term")
    results = tmp_path / "results"
    running_pids(path, results, 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "FAIL:interrupted" in kinds(path, results)  # resumable, not failed by its own fault
    r = run_cli("status", str(path), "--results", str(results), cwd=tmp_path)
    assert "1 interrupted" in r.stdout and "running" not in r.stdout


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_parent_of_workers_stops_them(tmp_path: Path, sig: signal.Signals) -> None:
    path, proc = start(tmp_path, f"orphans{int(sig)}", "--workers", "2")
    results = tmp_path / "results"
    pids = running_pids(path, results, 2, proc)
    assert proc.pid not in pids
    proc.send_signal(sig)
    proc.wait(timeout=120)
    assert wait_gone(pids) == [], "workers kept training after their parent was killed"
    if sig == signal.SIGTERM:
        assert proc.returncode == 130
    states = kinds(path, results)
    assert states == ["FAIL:interrupted", "FAIL:interrupted"], states  # each stopped and said so, resumable
    r = run_cli("status", str(path), "--results", str(results), cwd=tmp_path)
    assert "2 interrupted" in r.stdout and "running" not in r.stdout


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 100 KiB file system (tmpfs): too small for a checkpoint of the tiny test network (~160 KiB)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the injected-ENOSPC tests cover this")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_disk_leaves_the_trial_resumable(tmp_path: Path, small_disk: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text(LONG.format(name="full").replace("epochs: 40", "epochs: 1").replace("  - {name: b, set: "
                                                                                         "{kernel_size: 5}}\n", ""))
    r = run_cli("run", str(path), "--results", str(small_disk), cwd=tmp_path, env={"ABLATE_OFFLINE": "1"})
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{small_disk}/full/trials/") and "No space left on device" in last, r.stderr
    assert "Traceback" not in r.stderr and not list(small_disk.rglob("*.tmp"))
    r = run_cli("status", str(path), "--results", str(small_disk), cwd=tmp_path)
    assert "1 interrupted" in r.stdout, r.stdout  # not failed by its own fault: a plain re-run retries it
    subprocess.run(["mount", "-o", "remount,size=2m", str(small_disk)], check=True)
    r = run_cli("run", str(path), "--results", str(small_disk), cwd=tmp_path, env={"ABLATE_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert kinds(path, small_disk) == ["COMPLETE:", "FAIL:io"]


def test_a_full_disk_before_any_training_is_one_line(tmp_path: Path, small_disk: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text(LONG.format(name="full"))
    (small_disk / "filler").write_bytes(b"\0" * 97_000)
    r = run_cli("run", str(path), "--results", str(small_disk), cwd=tmp_path, env={"ABLATE_OFFLINE": "1"})
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(str(small_disk)) and last.endswith("No space left on device"), r.stderr
    assert "Traceback" not in r.stderr
    (small_disk / "filler").unlink()
    r = run_cli("status", str(path), "--results", str(small_disk), cwd=tmp_path)
    assert r.returncode == 0, r.stderr  # the ledger is still readable


def test_a_dead_worker_on_an_rdb_ledger_reads_as_interrupted(tmp_path: Path) -> None:
    """SQLite as the RDB storage (heartbeats like PostgreSQL): once the grace period has passed without a
    heartbeat, `status` shows the killed worker's trial as interrupted, without writing anything."""
    path = tmp_path / "rdb.yaml"
    path.write_text(LONG.format(name="rdb"))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    beat = ["--storage", url, "--heartbeat", "1", "--grace", "3"]
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(tmp_path / "results"),
                             *beat], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "ABLATE_OFFLINE": "1"})
    metrics = tmp_path / "results" / "rdb" / "trials"
    deadline = time.time() + 120
    while time.time() < deadline and not any(m.stat().st_size > 100 for m in metrics.glob("*/metrics.csv")):
        time.sleep(0.3)
    proc.kill()
    proc.wait()
    before = (tmp_path / "ledger.db").read_bytes()
    time.sleep(4)  # the grace period passes without a heartbeat
    r = run_cli("status", str(path), *beat, cwd=tmp_path)
    assert r.returncode == 0 and "1 interrupted" in r.stdout and "stopped sending heartbeats" in r.stdout, r.stdout
    assert (tmp_path / "ledger.db").read_bytes() == before
