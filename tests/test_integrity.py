"""Nothing lost, nothing silent: the ledger stays readable and read-only where it should, the data a study
names is the data it trains on, one ledger per study file, reports from the ledger, environment faults that
leave trials resumable, honest exit codes. In-process (ablate.cli.main) where possible."""

from __future__ import annotations

import errno
import gzip
import json
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions

TINY = """
name: {name}
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {data}
recipe: {{preset: classic, epochs: 1, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
"""
SYNTH = "{dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}"


def write_study(folder: Path, name: str = "s", variants: str = "  - {name: a}\n", data: str = SYNTH,
                file: str | None = None) -> Path:
    path = folder / (file or f"{name}.yaml")
    path.write_text(TINY.format(name=name, data=data) + "variants:\n" + variants)
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`ablate ARGS` in this process through the real entry point: (exit code, stdout, stderr)."""
    from ablate.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATE_OFFLINE", "1")
    before = signal.getsignal(signal.SIGTERM)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["ablate", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            signal.signal(signal.SIGTERM, before)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def states(path: Path, results: Path, *args: str) -> dict[str, list[str]]:
    led = Ledger(load_study(path, list(args)), LedgerOptions(None, results, readonly=True))
    out: dict[str, list[str]] = {}
    for t in led.store.trials():
        if t.user_attrs["trial_id"] in led.by_key:  # this version of the study only
            out.setdefault(t.user_attrs["trial_id"], []).append(t.state.name)
    return out


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- 1. read-only status/report, torn journals


def test_status_and_report_never_write_nor_create(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path)
    code, out, _ = cli("status", str(path))
    assert code == 0 and "1 new" in out
    code, _, err = cli("report", str(path))
    assert code == 2 and "no results yet" in err and len(error_lines(err)) == 1
    assert not (tmp_path / "results").exists() and not (tmp_path / "reports").exists()

    assert cli("run", str(path))[0] == 0
    before = tree(tmp_path / "results")
    for _ in range(3):
        code, out, _ = cli("status", str(path))
        assert code == 0 and "1 done" in out
    code, _, err = cli("report", str(path), "--no-charts")
    assert code == 0, err
    assert tree(tmp_path / "results") == before  # not one byte: no journal record, no lock file


def test_torn_last_record_is_repaired_with_a_backup(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path, variants="  - {name: a}\n  - {name: b, set: {kernel_size: 5}}\n")
    assert cli("run", str(path), "--set", "exclude=[b]")[0] == 0
    journal = tmp_path / "results" / "s" / "ledger.journal"
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 6, "worker_id": "x", "tri')  # a write cut short by a full disk

    code, out, _ = cli("status", str(path))  # read-only: reads what is whole, touches nothing
    assert code == 0 and "1 done" in out
    assert journal.read_bytes().endswith(b'"tri')

    code, _, err = cli("run", str(path))
    assert code == 0, err
    torn = [line for line in err.splitlines() if "torn" in line]
    assert len(torn) == 1 and torn[0].startswith("results/s/ledger.journal: ") and "backup" in torn[0]
    backups = list(journal.parent.glob("ledger.journal.torn-*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes().endswith(b'"tri')
    assert journal.read_bytes().startswith(whole)
    assert all(s == ["COMPLETE"] for s in states(path, tmp_path / "results").values())
    code, out, _ = cli("status", str(path))
    assert code == 0 and "2 done" in out


def test_garbage_inside_the_journal_is_one_line(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path)
    assert cli("run", str(path))[0] == 0
    journal = tmp_path / "results" / "s" / "ledger.journal"
    lines = journal.read_bytes().split(b"\n")
    lines[2] = b"\x00\x00garbage"
    journal.write_bytes(b"\n".join(lines))
    before = journal.read_bytes()
    for command in ("status", "run", "report"):
        code, _, err = cli(command, str(path))
        assert code == 2, (command, err)
        assert error_lines(err) == ["results/s/ledger.journal: line 3: not a ledger record (damaged journal; "
                                    "restore it from a backup, or move it away to start the study afresh)"], err
    assert journal.read_bytes() == before


def test_a_journal_path_that_is_another_file_or_a_folder(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path)
    other = tmp_path / "notes.txt"
    other.write_text("hello\nworld\n")
    for storage, expect in ((other, "line 1: not an ablate/optuna ledger journal"), (tmp_path, "is a folder")):
        code, _, err = cli("run", str(path), "--storage", str(storage))
        assert code == 2 and len(error_lines(err)) == 1 and expect in err, err
    assert other.read_text() == "hello\nworld\n" and not (tmp_path / "results").exists()


# ---------------------------------------------------------------- 2-3. data.root is used, and fingerprinted


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fmnist(root: Path, seed: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def fmnist(root: Path) -> str:
    return "{dataset: fashion-mnist, image_size: 16, root: " + json.dumps(str(root)) + "}"


@pytest.mark.parametrize("case", ["missing", "empty", "incomplete"])
def test_a_named_data_root_is_used_or_an_error(cli, tmp_path: Path, case: str) -> None:
    root = tmp_path / "fm"
    if case != "missing":
        root.mkdir()
    if case == "incomplete":
        fake_fmnist(root, 0)
        (root / "t10k-labels-idx1-ubyte.gz").unlink()
    path = write_study(tmp_path, data=fmnist(root))
    code, _, err = cli("run", str(path))
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: data: fashion-mnist: data.root {root} "), err
    if case == "incomplete":
        assert "t10k-labels-idx1-ubyte" in lines[0] and "train-images" not in lines[0]
    assert not (tmp_path / "results").exists()


def test_other_data_under_data_root_is_trained_again(cli, tmp_path: Path) -> None:
    from ablate.train.sources import data_fingerprint

    one, two = fake_fmnist(tmp_path / "one", 0), fake_fmnist(tmp_path / "two", 1)
    copy = fake_fmnist(tmp_path / "copy", 0)  # the same data elsewhere: same fingerprint
    path = write_study(tmp_path, data=fmnist(one))
    spec = load_study(path).variants[0].data
    assert data_fingerprint(spec) == data_fingerprint(spec.model_copy(update={"root": str(copy)}))
    assert data_fingerprint(spec) != data_fingerprint(spec.model_copy(update={"root": str(two)}))

    assert cli("run", str(path))[0] == 0
    results = tmp_path / "results"
    led = Ledger(load_study(path), LedgerOptions(None, results, readonly=True))
    (t,) = led.trials()
    assert t.user_attrs["data_fingerprint"] == data_fingerprint(spec)
    assert t.user_attrs["code_version"].startswith(__import__("ablate").__version__)

    path.write_text(path.read_text().replace(str(one), str(copy)))  # moved data: still done
    code, out, _ = cli("status", str(path))
    assert code == 0 and "1 done" in out
    path.write_text(path.read_text().replace(str(copy), str(two)))  # other data, same variant id
    assert load_study(path).variants[0].id == t.user_attrs["variant_id"]
    code, out, _ = cli("status", str(path))
    assert code == 0 and "1 stale" in out and "other data" in out
    code, _, err = cli("run", str(path))
    assert code == 0 and "1 queued" in err, err
    assert list(states(path, results).values()) == [["COMPLETE", "COMPLETE"]]
    df = pd.read_csv(results / "s" / "results.csv")
    assert df["status"].tolist() == ["done"]
    assert cli("run", str(path))[1:] and list(states(path, results).values()) == [["COMPLETE", "COMPLETE"]]


def test_status_notes_results_from_several_code_versions(cli, tmp_path: Path, monkeypatch) -> None:
    from ablate.sweep import ledger as L

    path = write_study(tmp_path, variants="  - {name: a}\n  - {name: b, set: {kernel_size: 5}}\n")
    monkeypatch.setattr(L, "code_version", lambda: "0.0.1+gold")
    assert cli("run", str(path), "--set", "exclude=[b]")[0] == 0
    monkeypatch.setattr(L, "code_version", lambda: "0.0.2+gnew")
    assert cli("run", str(path))[0] == 0
    code, out, _ = cli("status", str(path))
    assert code == 0
    assert "note: results come from 2 code versions: 0.0.1+gold (1 trial), 0.0.2+gnew (1 trial)" in out


# ---------------------------------------------------------------- 4. one ledger per study file


def test_another_file_with_the_same_name_is_refused(cli, tmp_path: Path) -> None:
    first = write_study(tmp_path, variants="  - {name: a}\n")
    second = write_study(tmp_path, variants="  - {name: b, set: {kernel_size: 5}}\n", file="copy.yaml")
    assert cli("run", str(first), "--enqueue-only")[0] == 0
    before = tree(tmp_path / "results")
    for command in ("run", "status", "worker"):
        code, _, err = cli(command, str(second))
        assert code == 2, (command, err)
        assert error_lines(err) == [f"{second}: name: 's' is already the name of the study in s.yaml (ledger "
                                    f"results/s/ledger.journal); give this study another name: (or use another "
                                    "--results/--storage)"], err
    assert tree(tmp_path / "results") == before
    assert list(states(first, tmp_path / "results").values()) == [["WAITING"]]


def test_a_worker_leaves_trials_of_another_version_alone(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path, variants="  - {name: a}\n")
    assert cli("run", str(path), "--set", "recipe.epochs=2", "--enqueue-only")[0] == 0  # version A, queued
    code, _, err = cli("run", str(path))  # version B (the file as it is) runs its own trial only
    assert code == 0, err
    a = states(path, tmp_path / "results", "recipe.epochs=2")
    b = states(path, tmp_path / "results")
    assert list(a.values()) == [["WAITING"]] and list(b.values()) == [["COMPLETE"]]  # not skipped, not trained
    code, _, err = cli("run", str(path), "--set", "recipe.epochs=2")
    assert code == 0, err
    assert list(states(path, tmp_path / "results", "recipe.epochs=2").values()) == [["COMPLETE"]]


# ---------------------------------------------------------------- 5. report from the ledger


@pytest.mark.parametrize("damage", ["truncated", "garbage", "stale"])
def test_report_is_built_from_the_ledger_not_results_csv(cli, tmp_path: Path, damage: str) -> None:
    path = write_study(tmp_path, variants="  - {name: a}\n  - {name: b, set: {kernel_size: 5}}\n")
    assert cli("run", str(path))[0] == 0
    csv = tmp_path / "results" / "s" / "results.csv"
    if damage == "truncated":
        csv.write_bytes(csv.read_bytes()[:40])
    elif damage == "garbage":
        csv.write_bytes(b"\x00\xff not a csv \n\x01,\x02\n")
    else:  # written by a run with other --set overrides
        assert cli("run", str(path), "--set", "recipe.epochs=2", "--set", "exclude=[b]")[0] == 0
    code, out, err = cli("report", str(path), "--no-charts")  # the tables are the subject
    assert code == 0, err
    md = (tmp_path / "reports" / "s" / "report.md").read_text()
    assert "not run" not in md and "2 done" in md, md[:2000]


# ---------------------------------------------------------------- 6. environment faults


def _no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()


@pytest.mark.parametrize("device", ["foo", "cuda:99", "tpu", *(["cuda"] if _no_gpu() else [])])
def test_a_bad_device_is_one_line_before_anything_is_written(cli, tmp_path: Path, device: str, empty_cache) -> None:
    path = write_study(tmp_path)
    for command in ("run", "worker"):
        code, _, err = cli(command, str(path), "--device", device)
        assert code == 2
        lines = error_lines(err)
        assert len(lines) == 1 and lines[0].startswith(f"--device: '{device}'"), err
    assert not (tmp_path / "results").exists() and not empty_cache.exists()  # not even the count cache


def test_a_full_disk_while_checkpointing_leaves_the_trial_resumable(cli, tmp_path: Path, monkeypatch) -> None:
    from ablate.train import checkpoint

    path = write_study(tmp_path)
    real = checkpoint.save

    def full(p: Path, payload: dict) -> None:  # torch.save gets as far as the temp file, then the disk is full
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(b"partial")
        tmp.unlink()
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    monkeypatch.setattr(checkpoint, "save", full)
    code, _, err = cli("run", str(path))
    assert code == 2
    last = error_lines(err)[-1]
    assert "No space left on device" in last and "resumable" in last and "Traceback" not in err, err
    results = tmp_path / "results" / "s"
    assert not list(results.rglob("*.tmp"))
    code, out, _ = cli("status", str(path))
    assert "1 interrupted" in out  # not failed by its own fault
    monkeypatch.setattr(checkpoint, "save", real)
    code, _, err = cli("run", str(path))  # a plain re-run retries it
    assert code == 0, err
    assert list(states(path, tmp_path / "results").values()) == [["FAIL", "COMPLETE"]]


def test_a_real_save_to_a_full_file_system_is_an_oserror(tmp_path: Path, monkeypatch) -> None:
    """checkpoint.save writes through a Python file: ENOSPC surfaces as OSError (torch's own writer would
    raise RuntimeError) and no temp file is left."""
    import builtins

    import torch

    from ablate.train import checkpoint

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def fake_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        return Full(f) if str(file).endswith(".tmp") and "w" in mode else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(OSError) as err:
        checkpoint.save(tmp_path / "checkpoint.pt", {"w": torch.zeros(10)})
    assert err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []



def test_ctrl_c_while_a_checkpoint_is_written_stops_after_it_is_whole(tmp_path: Path, monkeypatch) -> None:
    """torch's C++ writer calls our Python write(); a KeyboardInterrupt raised in there was swallowed (the save
    failed with "unexpected pos" and the trial read as failed by its own fault, or the interrupt was lost and
    the worker trained on). Now the signal is held back during the save and delivered once the file is whole."""
    import os
    import signal

    import torch

    from ablate.train import checkpoint

    real_write, sent = checkpoint._WriteAll.write, []

    def write_and_interrupt(self, data):  # noqa: ANN001, ANN202 - Ctrl-C arrives while torch.save writes
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
        return real_write(self, data)

    monkeypatch.setattr(checkpoint._WriteAll, "write", write_and_interrupt)
    # Python's own Ctrl-C handler, even when the test runner inherited SIGINT ignored (a background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request_restore = previous if previous is not None else signal.SIG_DFL
    payload = {"w": torch.arange(100_000, dtype=torch.float32), "step": 7}
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save(tmp_path / "checkpoint.pt", payload)
    finally:
        signal.signal(signal.SIGINT, request_restore)
    assert sent == [1]
    back = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # whole: written before the interrupt
    assert torch.equal(back["w"], payload["w"]) and back["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]

# ---------------------------------------------------------------- 7. exit codes


def test_exit_1_when_a_trial_failed_after_finishing_the_rest(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path, variants="  - {name: bad, set: {recipe.lr: 1.0e+30}}\n  - {name: good}\n")
    code, _, err = cli("run", str(path))
    assert code == 1
    assert error_lines(err)[-1] == (f"{path}: 1 of 2 trials done; 1 failed (see `ablate status`; --retry-failed "
                                    "trains failed ones again)")
    assert sorted(s[0] for s in states(path, tmp_path / "results").values()) == ["COMPLETE", "FAIL"]
    assert cli("run", str(path))[0] == 1  # still not everything asked for is done
    code, _, err = cli("worker", str(path))
    assert code == 0  # nothing was queued for it, nothing failed
    code, _, err = cli("run", str(path), "--retry-failed", "--enqueue-only")
    assert code == 0, err
    code, _, err = cli("worker", str(path))  # a worker whose trial failed
    assert code == 1 and error_lines(err)[-1] == f"{path}: 1 of 1 trials this worker ran failed (see `ablate status`)"


def test_an_empty_data_root_is_an_error(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path, data="{dataset: fashion-mnist, root: ''}")
    code, _, err = cli("validate", str(path))
    assert code == 2 and error_lines(err)[0].startswith(f"{path}: data.root: ")


def test_report_with_damaged_curves(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path, variants="  - {name: a}\n  - {name: b, set: {kernel_size: 5}}\n")
    assert cli("run", str(path))[0] == 0
    a, b = sorted((tmp_path / "results" / "s" / "trials").glob("*/metrics.csv"))
    a.write_bytes(b"\x89PNG\x00\xff garbage")
    b.write_text("epoch,top1,train_loss\nx,y,z\n")
    code, _, err = cli("report", str(path))
    assert code == 0, err
    assert "2 done" in (tmp_path / "reports" / "s" / "report.md").read_text()


# ---------------------------------------------------------------- 13. reports and exports that always work


@pytest.mark.slow
def test_report_of_a_search_study(cli, tmp_path: Path) -> None:
    path = tmp_path / "se.yaml"
    path.write_text(TINY.format(name="se", data=SYNTH) + "search: {sampler: random, trials: 2, seed: 1, space: "
                    "{kernel_size: [1, 3, 5], recipe.lr: {low: 0.01, high: 0.1, log: true}}}\n")
    assert cli("run", str(path))[0] == 0
    code, out, err = cli("report", str(path))
    assert code == 0, err
    md = (tmp_path / "reports" / "se" / "report.md").read_text()
    assert "2 done" in md


def test_parquet_is_written_when_a_column_mixes_types(cli, tmp_path: Path) -> None:
    path = write_study(tmp_path, variants="  - {name: dense}\n  - {name: dw, set: {groups: depthwise}}\n")
    assert cli("run", str(path))[0] == 0
    df = pd.read_parquet(tmp_path / "results" / "s" / "results.parquet")
    assert list(df["groups"]) == ["1", "depthwise"] and list(df["status"]) == ["done", "done"]
