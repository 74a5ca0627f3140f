"""Shared test setup: every test gets its own count cache, so no test reads or writes ~/.cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # One cache per session (timm's model-name list is costly to build); tests that need an
    # empty cache use the `empty_cache` fixture.
    cache = tmp_path_factory.getbasetemp() / "ablate-cache"
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # `ablate run` trains in process unless a test asks for workers (--workers, or deleting this variable):
    # the default on a CPU is one worker process per core (ablate.sweep.worker.default_workers)
    monkeypatch.setenv("ABLATE_WORKERS", "1")


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(cache))
    return cache


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """`python -m ablate ARGS` in a subprocess: exit codes and stderr exactly as a user sees them."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def one_thread():
    """One intra-op thread: small tensors, the same arithmetic every run, and a shared 2-core machine
    where 2 threads crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
