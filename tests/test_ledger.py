"""The ledger's rules in process, without training: sync queues what is not done (and never twice), pop hands
each queued trial out once, fail records the kind, and which failures the next sync queues again (retry);
the statuses results.csv and `ablate status` show for each. A journal file under tmp_path; no subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.config.load import load_study
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.record import TrialRecord
from ablate.sweep.results import results_frame
from ablate.sweep.states import PARTIAL, FailKind, State, Status, resumable

STUDY = """
name: {name}
model: {{depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}}
data: {{dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}}
recipe: {{preset: classic, epochs: 1, batch_size: 32, warmup_epochs: 0, lr: 0.05}}
seeds: [0, 1]
variants:
  - {{name: a}}
  - {{name: b, set: {{kernel_size: 5}}}}
"""


def ledger(tmp_path: Path, name: str = "led") -> Ledger:
    path = tmp_path / f"{name}.yaml"
    if not path.exists():
        path.write_text(STUDY.format(name=name))
    return Ledger(load_study(path), LedgerOptions(None, tmp_path / "results"))


def statuses(led: Ledger) -> dict[str, str]:
    df = results_frame(led)
    return dict(zip(df["trial_id"], df["status"], strict=True))


def test_the_enums_are_the_strings_old_ledgers_hold() -> None:
    assert [s.value for s in Status] == ["done", "running", "queued", "interrupted", "stale", "failed", "pruned",
                                         "new", "skipped"]  # display order
    assert Status.DONE == "done" and f"{Status.SKIPPED}" == "skipped" and Status.NEW.label == "not run"
    assert [k.value for k in FailKind] == ["error", "interrupted", "died", "data", "io"]
    assert [k for k in FailKind if not k.resumable] == [FailKind.ERROR]
    assert resumable("data") and resumable("io") and not resumable("error")
    assert not resumable(None) and not resumable("something new") and not resumable([1])  # unknown: own fault
    assert Status.counts_line({"skipped": 1, "done": 2, "new": 1}) == "2 done, 1 new, 1 skipped"
    assert Status.counts_line({"new": 3}, label=True) == "3 not run"
    assert PARTIAL not in {s.value for s in Status}


def test_sync_queues_every_trial_once_and_pop_hands_each_out_once(tmp_path: Path) -> None:
    led = ledger(tmp_path)
    assert set(statuses(led).values()) == {Status.NEW}
    assert led.sync() == {Status.QUEUED: 4, Status.DONE: 0}
    assert led.sync() == {"queued": 0, "done": 0}  # idempotent (plain string keys read the same counts)
    assert set(statuses(led).values()) == {Status.QUEUED}
    items = [led.pop() for _ in range(4)]
    assert led.pop() is None
    assert [i.key for i in items] == list(led.by_key)  # in study order, each once
    assert set(statuses(led).values()) == {Status.RUNNING}
    assert all(t.user_attrs["pid"] and t.user_attrs["host"] for t in led.trials())
    assert led.sync()[Status.QUEUED] == 0  # running trials (our own process: alive) are not queued again


def test_complete_is_done_and_never_queued_again(tmp_path: Path) -> None:
    led = ledger(tmp_path)
    led.sync()
    item = led.pop()
    led.complete(item, TrialRecord(top1=42.5, epochs=1))
    t = led.latest()[item.key]
    assert t.state is State.COMPLETE and t.value == 42.5 and t.user_attrs["top1"] == 42.5
    assert statuses(led)[item.key] == Status.DONE
    assert led.sync(retry_failed=True) == {Status.QUEUED: 0, Status.DONE: 1}


@pytest.mark.parametrize("kind", list(FailKind))
def test_fail_records_its_kind_and_only_resumable_ones_are_queued_again(tmp_path: Path, kind: FailKind) -> None:
    led = ledger(tmp_path, f"f{kind}")
    led.sync()
    item = led.pop()
    led.fail(item, f"because {kind}", kind=kind)
    t = led.latest()[item.key]
    assert t.state.name == "FAIL" and t.user_attrs["fail_kind"] == kind.value
    assert type(t.user_attrs["fail_kind"]) is str  # the storage holds the plain string
    assert t.user_attrs["fail_reason"] == f"because {kind}"
    shown = statuses(led)[item.key]
    # what status shows and what the next run does agree: interrupted <=> queued again
    assert shown == (Status.INTERRUPTED if kind.resumable else Status.FAILED)
    assert led.sync()[Status.QUEUED] == (1 if kind.resumable else 0)
    if not kind.resumable:
        assert statuses(led)[item.key] == Status.FAILED
        assert led.sync(retry_failed=True)[Status.QUEUED] == 1  # --retry-failed
    assert statuses(led)[item.key] == Status.QUEUED
    again = [led.pop() for _ in range(4)]
    assert [i.key for i in again if i is not None].count(item.key) == 1  # the same trial id, a new attempt
    retry = next(i for i in again if i.key == item.key)
    assert retry.trial_id != item.trial_id and led.attempts()[item.key] == 2
    led.complete(retry, TrialRecord(top1=50.0))
    assert statuses(led)[item.key] == Status.DONE
    assert [t.state.name for t in led.history()[item.key]] == ["FAIL", "COMPLETE"]


def test_a_data_failure_is_retried_by_the_next_run(tmp_path: Path) -> None:
    """The data could not be read (an environment problem): shown as interrupted, and the next sync queues it
    without --retry-failed, like a disk fault or a killed worker."""
    led = ledger(tmp_path)
    led.sync()
    item = led.pop()
    led.fail(item, "data.root: no such folder", kind="data")  # a plain string kind, as old callers pass it
    assert statuses(led)[item.key] == Status.INTERRUPTED
    assert led.sync() == {Status.QUEUED: 1, Status.DONE: 0}


def test_an_unknown_or_missing_kind_is_the_trials_own_fault(tmp_path: Path) -> None:
    led = ledger(tmp_path)
    led.sync()
    item = led.pop()
    led.store.set_attrs(led.latest()[item.key], {"fail_kind": "from a future version"})
    led.store.tell(led.latest()[item.key], State.FAIL)
    assert statuses(led)[item.key] == Status.FAILED
    assert led.sync()[Status.QUEUED] == 0
    with pytest.raises(ValueError):
        led.fail(led.pop(), "x", kind="no such kind")  # ablate itself only records the kinds it knows


def test_a_duplicate_queued_by_a_concurrent_sync_is_skipped(tmp_path: Path) -> None:
    led = ledger(tmp_path)
    led.sync()
    first = led.pop()
    led.complete(first, TrialRecord(top1=1.0))
    led.store.enqueue(led.attrs(*led.by_key[first.key]))  # as a racing `ablate run` would
    taken = [led.pop() for _ in range(4)]
    assert first.key not in [i.key for i in taken if i is not None]  # the duplicate was not handed out
    skipped = [t for t in led.trials() if t.state.name == "PRUNED"]
    assert len(skipped) == 1 and skipped[0].user_attrs[Status.SKIPPED] == "already complete"
    assert Status.of(skipped[0]) == Status.SKIPPED and statuses(led)[first.key] == Status.DONE


def test_of_two_queued_attempts_of_one_trial_the_older_runs(tmp_path: Path) -> None:
    """Two `ablate run` on two hosts queued the same trial id at once: the first pop takes the older attempt,
    and the newer one is skipped (never both, never neither)."""
    led = ledger(tmp_path)
    led.sync()
    key = next(iter(led.by_key))
    led.store.enqueue(led.attrs(*led.by_key[key]))  # the racing run's copy (newest)
    items = [led.pop() for _ in range(5)]
    assert [i.key for i in items if i is not None] == list(led.by_key) and items[-1] is None
    first = items[0]
    assert first.number == min(t.number for t in led.trials() if t.user_attrs["trial_id"] == key)
    (skipped,) = [t for t in led.trials() if t.state.name == "PRUNED"]
    assert skipped.user_attrs[Status.SKIPPED] == f"already running (trial {first.number})"
    assert Status.of(skipped) == Status.SKIPPED and led.attempts()[key] == 1


def test_ledger_options_reach_the_ledger_and_the_worker(tmp_path: Path) -> None:
    from ablate.sweep.options import LedgerOptions
    from ablate.sweep.worker import WorkerOptions

    opts = LedgerOptions(None, tmp_path / "results", heartbeat=5, grace=9, max_retry=1)
    assert opts.replace(readonly=True).readonly and not opts.readonly  # frozen: replace() gives a new one
    assert LedgerOptions(None, str(tmp_path / "results")).results_root == tmp_path / "results"  # str or Path
    led = Ledger(load_study(ledger(tmp_path).loaded.file), LedgerOptions(None, tmp_path / "results", readonly=True))
    assert led.options == LedgerOptions(None, tmp_path / "results", readonly=True) and led.readonly
    assert WorkerOptions(ledger=opts).ledger is opts and WorkerOptions().ledger == LedgerOptions()
    with pytest.raises(TypeError):  # the older loose arguments are gone: one way to say it
        Ledger(led.loaded, None, tmp_path / "results")  # type: ignore[call-arg]


def test_status_counts_skipped_trials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ablate status` names every status it counts: a trial id whose only attempt was skipped is `skipped`."""
    from ablate.commands.status import print_status

    led = ledger(tmp_path)
    led.sync()
    items = [led.pop() for _ in range(4)]
    led.complete(items[0], TrialRecord(top1=1.0))
    led.fail(items[1], "boom")
    led.store.set_attrs(led.latest()[items[2].key], {Status.SKIPPED.value: "already complete"})
    led.store.tell(led.latest()[items[2].key], State.PRUNED)
    print_status(led, to=None)
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "led: 4 trials: 1 done, 1 running, 1 failed, 1 skipped", err


def test_progress_counts_the_study_over_every_worker_with_an_estimate(tmp_path: Path) -> None:
    from ablate.sweep.worker import progress_line

    led = ledger(tmp_path)
    led.sync()
    assert led.progress() == (0, 4)
    first, second = led.pop(), led.pop()  # two trials running: as if two workers trained them
    led.complete(first, TrialRecord(top1=50.0))
    assert led.progress() == (1, 4)
    # 3 left at 10 s per trial on this worker, shared by 2 workers (the other one still running): 15 s
    assert progress_line(led, [10.0]) == "led: 1/4 trials done, about 15 s left"
    led.fail(second, "boom", kind=FailKind.ERROR)  # a failure is not progress
    assert led.progress() == (1, 4)
    for _ in range(3):
        item = led.pop()
        if item is not None:
            led.complete(item, TrialRecord(top1=50.0))
    # the failed trial is not trained again by this run: it is counted, and no time is estimated for it
    assert progress_line(led, [600.0]) == "led: 3/4 trials done, 1 failed"
