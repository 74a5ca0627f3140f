"""The ledger on a real PostgreSQL server: several workers on one study, and a worker killed mid-trial
whose trial a live worker fails (no heartbeat) and retries.

The server: $ABLATE_TEST_PG_URL if set (a URL of a role allowed to create databases, e.g.
postgresql://postgres@localhost:5432/postgres); else one started for the session from Debian's
postgresql binaries (/usr/lib/postgresql/*/bin: initdb + pg_ctl, run as the `postgres` user when we are
root), in a temporary folder, on a free local port. Each session uses a fresh database, dropped at the
end. No server to be had: the tests skip, except under CI (CI=1), where that is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli
from optuna.trial import TrialState

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions

pytestmark = pytest.mark.slow  # subprocesses, signals, servers: CI runs them, `-m "not slow"` skips them

TINY = """
name: {name}
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {{dataset: synthetic, image_size: 16, train_subset: {n}, val_subset: 128}}
recipe: {{preset: classic, epochs: {epochs}, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
"""
# one thread per worker process: the tests start several on a small machine
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def no_server(reason: str) -> None:
    if in_ci():
        pytest.fail(f"PostgreSQL tests need a server under CI: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


# ---- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    """The newest Debian PostgreSQL bin folder (or initdb on PATH)."""

    def version(p: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/", p)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class LocalServer:
    """A throwaway PostgreSQL cluster in a temporary folder, owned by a non-root user."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.user: str | None = None
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            import pwd

            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    pwd.getpwnam(name)
                    self.user = name
                    break
            if self.user is None or not shutil.which("runuser"):
                raise RuntimeError("running as root, and no `postgres` user (or runuser) to run the server as")
            self.prefix = ["runuser", "-u", self.user, "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="ablate-pg-"))
        self.data, self.sock, self.log = self.dir / "data", self.dir / "sock", self.dir / "server.log"
        self.sock.mkdir()
        if self.user:
            import pwd

            pw = pwd.getpwnam(self.user)
            for p in (self.dir, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.port = 0

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *cmd], cwd=self.dir, capture_output=True, text=True, timeout=timeout)

    def start(self) -> str:
        r = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "ablate", "-A", "trust", "-E", "UTF8",
                      "--no-locale", "--no-sync")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip()[-500:]}")
        for _ in range(3):  # a port taken between choosing and binding: choose again
            self.port = _free_port()
            opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            r = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts,
                          "-w", "-t", "60", "start")
            if r.returncode == 0:
                return f"postgresql://ablate@127.0.0.1:{self.port}/postgres"
        log = self.log.read_text()[-800:] if self.log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a fresh database on a PostgreSQL server, for this test session."""
    try:
        import psycopg2
        from sqlalchemy.engine import make_url
    except ImportError as e:
        no_server(f"the driver is not installed ({e}); pip install psycopg2-binary")
    server = None
    admin = os.environ.get("ABLATE_TEST_PG_URL")
    if not admin:
        bindir = _pg_bin()
        if bindir is None:
            no_server("ABLATE_TEST_PG_URL is not set and no initdb was found (apt-get install postgresql)")
        try:
            server = LocalServer(bindir)
            admin = server.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            if server is not None:
                server.stop()
            no_server(f"could not start one from {bindir}: {e}")
    name = f"ablate_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(admin)

    def connect():
        return psycopg2.connect(host=admin_url.host, port=admin_url.port, user=admin_url.username,
                                password=admin_url.password, dbname=admin_url.database or "postgres")

    try:
        conn = connect()
    except psycopg2.Error as e:
        if server is not None:
            server.stop()
        no_server(f"cannot connect to {admin_url.render_as_string(hide_password=True)}: {e}")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield admin_url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception):
            conn = connect()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.close()
        if server is not None:
            server.stop()


# ---- helpers


def study(tmp_path: Path, name: str, variants: list[str], epochs: int = 1, n: int = 256) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, epochs=epochs, n=n) + "variants:\n"
                    + "".join(f"  - {v}\n" for v in variants))
    return path


def attempts(path: Path, url: str, results: Path) -> dict[str, list]:
    """trial id -> its optuna trials (attempts), oldest first."""
    led = Ledger(load_study(path), LedgerOptions(url, results))
    out: dict[str, list] = {}
    for t in sorted(led.trials(), key=lambda t: t.number):
        out.setdefault(t.user_attrs["trial_id"], []).append(t)
    return out


def worker(path: Path, url: str, results: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablate", "worker", str(path), "--storage", url,
                             "--results", str(results), *extra], cwd=path.parent, env={**os.environ, **ENV},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[str]:
    """Wait for the worker processes; their stderr."""
    errs = []
    deadline = time.time() + timeout
    try:
        for p in procs:
            _, err = p.communicate(timeout=max(1.0, deadline - time.time()))
            errs.append(err)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return errs


# ---- tests


def test_three_workers_share_a_postgres_study(tmp_path: Path, pg_url: str) -> None:
    variants = [f"{{name: k{k}d{d}, set: {{kernel_size: {k}, drop_path: {d}}}}}"
                for k in (1, 3, 5, 7) for d in (0, 0.1, 0.2)]
    path = study(tmp_path, "pgpar", variants)
    results = tmp_path / "results"
    r = run_cli("run", str(path), "--storage", pg_url, "--results", str(results), "--enqueue-only", cwd=tmp_path,
                env=ENV)
    assert r.returncode == 0, r.stderr
    assert "12 queued" in r.stderr
    assert "ablate@127.0.0.1" in r.stderr or "postgresql" in r.stderr
    procs = [worker(path, pg_url, results, "--heartbeat", "2") for _ in range(3)]
    errs = finish(procs)
    assert all(p.returncode == 0 for p in procs), errs

    states = {k: [t.state.name for t in ts] for k, ts in attempts(path, pg_url, results).items()}
    assert len(states) == 12
    assert all(s == ["COMPLETE"] for s in states.values()), states  # each exactly once, nothing lost
    led = Ledger(load_study(path), LedgerOptions(pg_url, results))
    assert len({t.user_attrs["pid"] for t in led.trials()}) >= 2  # the work was shared

    # the same trials as a single worker on the default journal file
    journal = tmp_path / "journal-results"
    r = run_cli("run", str(path), "--results", str(journal), cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    one = pd.read_csv(journal / "pgpar" / "results.csv")
    assert set(one["trial_id"]) == set(states)

    # re-running on PostgreSQL trains nothing and writes the table; status reads the server
    r = run_cli("run", str(path), "--storage", pg_url, "--results", str(results), cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "12 already done, 0 to train" in r.stderr
    df = pd.read_csv(results / "pgpar" / "results.csv")
    assert (df["status"] == "done").all() and (df["attempts"] == 1).all()
    assert list(df["trial_id"]) == list(one["trial_id"])  # same ids, same (study) order
    r = run_cli("status", str(path), "--storage", pg_url, "--results", str(results), cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "12 trials: 12 done" in r.stdout


def test_killed_worker_trial_is_retried_by_a_live_worker(tmp_path: Path, pg_url: str) -> None:
    path = study(tmp_path, "pgkill", ["{name: a, set: {kernel_size: 3}}", "{name: b, set: {kernel_size: 5}}",
                                      "{name: raises, set: {recipe.opt: fusedadam}}"], epochs=3, n=2048)
    results = tmp_path / "results"
    hb = ("--heartbeat", "1", "--grace", "4")
    r = run_cli("run", str(path), "--storage", pg_url, "--results", str(results), "--enqueue-only", *hb,
                cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    victim = worker(path, pg_url, results, *hb)
    survivor = worker(path, pg_url, results, *hb)
    try:
        # wait until the victim's trial has finished an epoch (so a checkpoint exists), then kill it. On a fast
        # machine the victim can finish the trial's last epochs while the ledger is read: it is stopped (SIGSTOP)
        # first, and killed only if the trial is then still its own and running.
        key = metrics = None
        deadline = time.time() + 180
        while time.time() < deadline and metrics is None:
            for k, ts in attempts(path, pg_url, results).items():
                t = ts[-1]
                if t.state.name == "RUNNING" and t.user_attrs.get("pid") == victim.pid:
                    m = results / "pgkill" / "trials" / k / "metrics.csv"
                    if m.exists() and (m.parent / "checkpoint.pt").exists() and len(pd.read_csv(m)) >= 1:
                        victim.send_signal(signal.SIGSTOP)
                        now = attempts(path, pg_url, results)[k][-1]
                        if now.state.name == "RUNNING" and now.user_attrs.get("pid") == victim.pid:
                            key, metrics = k, m
                            break
                        victim.send_signal(signal.SIGCONT)  # it finished that trial meanwhile: wait for its next
            time.sleep(0.2)
        assert metrics is not None, "the victim worker finished no epoch within 180 s"
        before = pd.read_csv(metrics)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        t_kill = time.time()
        errs = finish([survivor])
    finally:
        for p in (victim, survivor):
            if p.poll() is None:
                p.kill()
    took = time.time() - t_kill
    # exit 1 when the trial that raises was this worker's (a trial failed), else 0
    ran_raises = any(t.user_attrs.get("pid") == survivor.pid and t.user_attrs.get("name") == "raises"
                     for ts in attempts(path, pg_url, results).values() for t in ts)
    assert survivor.returncode == (1 if ran_raises else 0), errs

    history = attempts(path, pg_url, results)
    states = {k: [t.state.name for t in ts] for k, ts in history.items()}
    assert len(states) == 3
    # the killed trial: one failed attempt (the dead worker's), then the retry, complete; nothing duplicated
    dead, *rest = history[key]
    assert dead.state.name == "FAIL" and dead.user_attrs["pid"] == victim.pid
    assert dead.user_attrs["fail_kind"] == "died" and "stopped sending heartbeats" in dead.user_attrs["fail_reason"]
    assert [t.state.name for t in rest] == ["COMPLETE"], states
    retry = rest[0]
    raw = Ledger(load_study(path), LedgerOptions(pg_url, results)).store.storage.get_trial(retry.storage_id)
    assert raw.system_attrs.get("failed_trial") == dead.number  # optuna's retry callback made it
    assert retry.user_attrs["pid"] == survivor.pid
    for attr in ("trial_id", "variant_id", "name", "seed", "config"):  # the retry keeps the trial's attributes
        assert retry.user_attrs[attr] == dead.user_attrs[attr]
    # every other trial ran once: a trial that fails by its own fault is not retried
    for k, s in states.items():
        if k != key:
            assert s in (["COMPLETE"], ["FAIL"]), states
    raises = [k for k, ts in history.items() if ts[0].user_attrs["name"] == "raises"][0]
    assert states[raises] == ["FAIL"] and history[raises][0].user_attrs["fail_kind"] == "error"

    # the retry resumed from the dead attempt's checkpoint: epochs already trained were not trained again
    rows = pd.read_csv(metrics)
    assert list(rows["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(rows.iloc[: len(before)], before)

    r = run_cli("status", str(path), "--storage", pg_url, "--results", str(results), cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "2 done" in r.stdout and "1 failed" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.split()[:1] == [dead.user_attrs["name"]])
    assert " done " in row and " 2 " in row and "retried after" in row and "heartbeats" in row, r.stdout
    assert took < 120


def test_stale_trials_are_retried_up_to_max_retry(tmp_path: Path, pg_url: str) -> None:
    """In-process, no training: heartbeats, the grace period, the retry limit, a trial taken over."""
    from ablate.sweep.heartbeat import Heartbeat, StopEither

    path = study(tmp_path, "pgstale", ["{name: only}"])
    led = Ledger(load_study(path), LedgerOptions(pg_url, tmp_path / "results", heartbeat=1, grace=3, max_retry=1))
    assert led.sync()["queued"] == 1
    item = led.pop()
    assert item is not None and led.pop() is None
    with Heartbeat(led.store, item.trial_id, led.heartbeat):  # beating: not stale
        time.sleep(4.5)
        led.fail_stale()
        assert [t.state.name for t in led.trials()] == ["RUNNING"]
    time.sleep(4)  # silent for longer than the grace period: failed, and retried once
    led.fail_stale()
    assert [t.state.name for t in sorted(led.trials(), key=lambda t: t.number)] == ["FAIL", "WAITING"]
    again = led.pop()
    assert again is not None and again.key == item.key and again.trial_id != item.trial_id
    time.sleep(4)
    led.fail_stale()  # the retry's worker died too: max_retry=1 is spent, it stays failed
    states = [t.state.name for t in sorted(led.trials(), key=lambda t: t.number)]
    assert states == ["FAIL", "FAIL"]
    assert all("stopped sending heartbeats" in t.user_attrs["fail_reason"] for t in led.trials())
    assert led.attempts() == {item.key: 2}
    # a later `ablate run` (sync) queues a trial whose worker died again, as on a journal file
    assert led.sync()["queued"] == 1
    third = led.pop()
    assert third is not None
    # a trial failed under a live worker (its heartbeats were late): the worker learns it lost the trial
    stop = threading.Event()
    with Heartbeat(led.store, third.trial_id, led.heartbeat) as beat:
        led.store.storage.set_trial_state_values(third.trial_id, TrialState.FAIL)  # as another worker would
        deadline = time.time() + 10
        while not beat.lost.is_set() and time.time() < deadline:
            time.sleep(0.1)
        assert beat.lost.is_set() and StopEither(stop, beat.lost).is_set() and not stop.is_set()


@pytest.fixture
def empty_db(pg_url: str) -> Iterator[str]:
    """The URL of another fresh, empty database on the same server (dropped after the test)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    name = f"ablate_empty_{uuid.uuid4().hex[:12]}"

    def admin(sql: str) -> None:
        conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                                dbname=url.database)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    admin(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with contextlib.suppress(Exception):
        admin(f'DROP DATABASE IF EXISTS "{name}"')


def test_reading_commands_create_nothing_on_an_empty_database(tmp_path: Path, empty_db: str) -> None:
    import sqlalchemy

    path = study(tmp_path, "pgempty", ["{name: a, set: {kernel_size: 3}}"])
    for command in ("status", "report"):
        run_cli(command, str(path), "--storage", empty_db, "--results", str(tmp_path / "results"), cwd=tmp_path,
                env=ENV)
    engine = sqlalchemy.create_engine(empty_db.replace("postgresql://", "postgresql+psycopg2://"))
    assert sqlalchemy.inspect(engine).get_table_names() == []  # optuna's tables were not created
    engine.dispose()


def test_no_output_shows_a_password_given_in_the_query(tmp_path: Path, pg_url: str) -> None:
    path = study(tmp_path, "pgsecret", ["{name: a, set: {kernel_size: 3}}"])
    url = f"{pg_url}?password=hunter2pw&connect_timeout=5"  # trust auth: the server takes any password
    for command in ("run", "status"):
        r = run_cli(command, str(path), "--storage", url, "--results", str(tmp_path / "results"),
                    *(["--enqueue-only"] if command == "run" else []), cwd=tmp_path, env=ENV)
        assert r.returncode == 0, r.stderr
        assert "hunter2pw" not in r.stderr + r.stdout and "password=***" in r.stderr + r.stdout or command == "status"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if "hunter2pw" in p.read_text(errors="replace")]


def test_a_dropped_connection_mid_trial_is_not_the_trials_failure(tmp_path: Path, pg_url: str) -> None:
    """The server drops the worker's connections while it trains: the trial is never recorded `failed` (the
    worker reconnects and finishes, or stops with exit 2 leaving it resumable), no traceback; a re-run ends it."""
    import psycopg2
    from sqlalchemy.engine import make_url

    path = study(tmp_path, "pgdrop", ["{name: a, set: {kernel_size: 3}}"], epochs=3, n=512)
    results = tmp_path / "results"
    hb = ("--heartbeat", "1", "--grace", "30")
    assert run_cli("run", str(path), "--storage", pg_url, "--results", str(results), "--enqueue-only", *hb,
                   cwd=tmp_path, env=ENV).returncode == 0
    proc = worker(path, pg_url, results, *hb)
    metrics = results / "pgdrop" / "trials"
    deadline = time.time() + 180
    while time.time() < deadline and not list(metrics.glob("*/metrics.csv")):
        time.sleep(0.2)
    url = make_url(pg_url)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        for _ in range(10):  # every connection to the study's database, for a second
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                        (url.database,))
            time.sleep(0.1)
    conn.close()
    (err,) = finish([proc])
    assert proc.returncode in (0, 2) and "Traceback" not in err, err
    attempts_ = [t for ts in attempts(path, pg_url, results).values() for t in ts]
    assert not [t for t in attempts_ if t.user_attrs.get("fail_kind") == "error"], err
    r = run_cli("run", str(path), "--storage", pg_url, "--results", str(results), *hb, cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    assert (pd.read_csv(results / "pgdrop" / "results.csv")["status"] == "done").all()


def test_adaptive_rounds_continue_across_postgres_workers(tmp_path: Path, pg_url: str) -> None:
    """`evidence.max_seeds` on a shared PostgreSQL study: two workers train the study's seeds, then the next
    round's (queued by whichever worker finds the round whole), each trial exactly once; the plan the ledger's
    results call for is exactly what was trained."""
    path = study(tmp_path, "pground", ["{name: base}", "{name: k5, set: {kernel_size: 5}}",
                                       "{name: k7, set: {kernel_size: 7}}"])
    path.write_text(path.read_text() + "seeds: [0, 1]\nevidence: {max_seeds: 3, round_seeds: 1}\n")
    results = tmp_path / "results"
    r = run_cli("run", str(path), "--storage", pg_url, "--results", str(results), "--enqueue-only", cwd=tmp_path,
                env=ENV)
    assert r.returncode == 0, r.stderr
    procs = [worker(path, pg_url, results, "--heartbeat", "2") for _ in range(2)]
    errs = finish(procs)
    assert all(p.returncode == 0 for p in procs), errs
    states = {k: [t.state.name for t in ts] for k, ts in attempts(path, pg_url, results).items()}
    assert all(s == ["COMPLETE"] for s in states.values()), states
    # 1 degree of freedom cannot settle a change at look 1: round 1 gives every variant seed 2
    assert sorted(k.rsplit("-s", 1)[1] for k in states) == ["0", "0", "0", "1", "1", "1", "2", "2", "2"]
    led = Ledger(load_study(path), LedgerOptions(pg_url, results))
    assert led.next_round() == 0 and set(led.known()) == set(states)
