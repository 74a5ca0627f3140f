"""`ablate run` without --workers: one worker per core on a CPU (capped, never more than the trials queued),
one on a GPU; ABLATE_WORKERS sets it (the test suite pins it to 1 in conftest)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ablate.sweep import devices
from ablate.sweep.devices import MAX_AUTO_WORKERS, default_workers


@pytest.mark.parametrize(("cores", "queued", "expected"), [
    (2, 51, 2),  # the quick roadmap on a 2-core laptop
    (2, 1, 1),  # one trial: all threads to it
    (2, 0, 1),
    (16, 51, MAX_AUTO_WORKERS),  # capped: each worker holds torch and a trial's memory
    (16, 3, 3),  # never more processes than trials
    (1, 51, 1),
])
def test_one_worker_per_core_on_a_cpu(monkeypatch: pytest.MonkeyPatch, cores: int, queued: int, expected: int) -> None:
    monkeypatch.setattr(devices.os, "cpu_count", lambda: cores)
    assert default_workers("cpu", queued) == expected


def test_one_worker_on_an_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(devices, "no_accelerator_here", lambda: False)  # a GPU device node: torch is asked
    assert default_workers("cuda", 51) == default_workers("cuda:1", 51) == default_workers("mps", 51) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # no --device: the best one is a GPU
    assert default_workers(None, 51) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_workers(None, 51) == 4


def test_the_cli_reads_ablate_workers(monkeypatch: pytest.MonkeyPatch) -> None:

    assert os.environ.get("ABLATE_WORKERS") == "1"  # conftest: tests train in process unless they ask
    from typer.main import get_command

    from ablate.cli import app

    run = get_command(app).commands["run"]  # type: ignore[attr-defined]
    (opt,) = [p for p in run.params if p.name == "workers"]
    assert opt.envvar == "ABLATE_WORKERS" and opt.default is None


@pytest.mark.parametrize(("nodes", "platform", "certain"), [
    ((), "linux", True),
    (("/dev/nvidiactl",), "linux", False),
    (("/dev/kfd",), "linux", False),  # ROCm
    ((), "darwin", False),  # MPS: torch is asked
])
def test_no_accelerator_is_known_without_torch_only_when_certain(monkeypatch: pytest.MonkeyPatch, nodes: tuple,
                                                                 platform: str, certain: bool) -> None:
    monkeypatch.setattr(devices.sys, "platform", platform)
    monkeypatch.setattr(devices.os.path, "exists", lambda p: p in nodes)
    assert devices.no_accelerator_here() is certain


def test_ablate_run_itself_never_imports_torch_on_a_cpu_machine(tmp_path) -> None:  # noqa: ANN001
    """The process of `ablate run` queues the trials and starts the workers; with the counts cached, the
    Fashion-MNIST files checked without torch and no GPU device node, it never imports torch (~2.5 s)."""
    import subprocess
    import sys
    import textwrap

    if (__import__("os").cpu_count() or 1) < 2:
        pytest.skip("one core: `ablate run` trains in its own process")
    if not devices.no_accelerator_here():
        pytest.skip("this machine has a GPU device node: `ablate run` asks torch how many workers to start")
    from ablate.train.sources import _fashion_mnist_files

    try:
        _fashion_mnist_files(None)
    except Exception:  # noqa: BLE001
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist; CI installs it)")
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nmodel: {depths: [1, 1], dims: [8, 16], stem: patchify, patch_size: 2}\n"
                     "data: {dataset: fashion-mnist, image_size: 8, train_subset: 64, val_subset: 32}\n"
                     "recipe: {preset: classic, epochs: 1, batch_size: 32}\nseeds: [0, 1]\n")
    env = {**__import__("os").environ, "ABLATE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("ABLATE_WORKERS", None)
    flops = subprocess.run([sys.executable, "-m", "ablate", "flops", str(study)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert flops.returncode == 0, flops.stderr  # the counts are cached, as for a study run before
    probe = textwrap.dedent(f"""
        import sys
        from ablate.sweep import worker
        def started(loaded, n, opts, **hooks):
            print("workers", n, "torch imported", "torch" in sys.modules)
            sys.exit(0)
        worker.run_workers = started
        from ablate.cli import main
        sys.argv = ["ablate", "run", {str(study)!r}, "--results", {str(tmp_path / "results")!r}]
        main()
    """)
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert "workers 2 torch imported False" in r.stdout, (r.stdout, r.stderr)


def test_run_workers_calls_on_first_exit_once_while_the_others_still_train(tmp_path: Path) -> None:
    """`ablate run` imports what its finish needs when the first worker ends (its core is free), once; and it
    notices the last worker's end at once (it waits on the processes' sentinels, not a polling sleep). Each
    child records when it ends (CLOCK_MONOTONIC is one clock for every process), so a slow fork on a loaded
    machine does not decide the test. It runs in a fresh interpreter: inside the long test process, after
    other tests, a child's end was seen one poll interval (1 s) late, which is the test process's state, not
    what `ablate run` does."""
    import subprocess
    import sys
    import textwrap

    probe = textwrap.dedent(f"""
        import multiprocessing as mp, os, time
        from pathlib import Path
        from types import SimpleNamespace
        from ablate.sweep import worker
        out = Path({str(tmp_path)!r})

        def child(_loaded, _opts, i):
            time.sleep(0.5 + 1.5 * i)
            (out / f"end{{i}}").write_text(repr(time.monotonic()))
            os._exit(0)  # no teardown of a forked copy of this process: the end is now

        fork = mp.get_context("fork")  # (not spawn: the child keeps the stub above)
        worker.mp.get_context = lambda _method: fork
        worker._child = child
        called = []
        codes = worker.run_workers(SimpleNamespace(file="s.yaml"), 2, worker.WorkerOptions(threads=1),
                                   on_first_exit=lambda: called.append(time.monotonic()))
        print(repr((codes, called, time.monotonic())))
    """)
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    codes, called, returned = eval(r.stdout.strip().splitlines()[-1])  # noqa: S307 (our own repr)
    assert codes == [0, 0]
    first, second = (float((tmp_path / f"end{i}").read_text()) for i in (0, 1))
    assert len(called) == 1 and first <= called[0] < second  # when the first ended, not the second
    assert called[0] - first < 0.5 and returned - second < 0.5  # noticed at once, no polling delay
