"""`ablate run` without --workers: one worker per core on a CPU (capped, never more than the trials queued),
one on a GPU; ABLATE_WORKERS sets it (the test suite pins it to 1 in conftest)."""

from __future__ import annotations

import pytest
import torch

from ablate.sweep import worker
from ablate.sweep.worker import MAX_AUTO_WORKERS, default_workers


@pytest.mark.parametrize(("cores", "queued", "expected"), [
    (2, 51, 2),  # the quick roadmap on a 2-core laptop
    (2, 1, 1),  # one trial: all threads to it
    (2, 0, 1),
    (16, 51, MAX_AUTO_WORKERS),  # capped: each worker holds torch and a trial's memory
    (16, 3, 3),  # never more processes than trials
    (1, 51, 1),
])
def test_one_worker_per_core_on_a_cpu(monkeypatch: pytest.MonkeyPatch, cores: int, queued: int, expected: int) -> None:
    monkeypatch.setattr(worker.os, "cpu_count", lambda: cores)
    assert default_workers("cpu", queued) == expected


def test_one_worker_on_an_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker.os, "cpu_count", lambda: 8)
    assert default_workers("cuda", 51) == default_workers("cuda:1", 51) == default_workers("mps", 51) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # no --device: the best one is a GPU
    assert default_workers(None, 51) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_workers(None, 51) == 4


def test_the_cli_reads_ablate_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    assert os.environ.get("ABLATE_WORKERS") == "1"  # conftest: tests train in process unless they ask
    from typer.main import get_command

    from ablate.cli import app

    run = get_command(app).commands["run"]  # type: ignore[attr-defined]
    (opt,) = [p for p in run.params if p.name == "workers"]
    assert opt.envvar == "ABLATE_WORKERS" and opt.default is None
