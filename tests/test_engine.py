"""The training engine: learning, determinism, failure on NaN, resume, and the recipe presets."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest
import torch
import yaml

from ablate.config.load import load_study
from ablate.config.study import Recipe
from ablate.config.variant import Variant
from ablate.train import checkpoint, engine, metrics
from ablate.train.engine import TrialFailed, run_trial

REFERENCE = Path(__file__).resolve().parents[1] / "ablate" / "reference" / "training_recipe.yaml"
TINY = """
name: tiny
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1}
data: {dataset: synthetic, image_size: 16, train_subset: 512, val_subset: 256}
recipe: {preset: classic, epochs: 2, batch_size: 32, lr: 0.1, warmup_epochs: 0, sched: cosine,
         crop_scale: null, hflip: 0.0}
"""
TIMING = ("epoch_seconds", "train_img_per_s", "infer_img_per_s")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one intra-op thread (see conftest.one_thread)."""


def variant(tmp_path: Path, *overrides: str) -> Variant:
    path = tmp_path / "study.yaml"
    path.write_text(TINY)
    return load_study(path, list(overrides)).variants[0]


def rows(trial_dir: Path) -> list[dict[str, str]]:
    with open(trial_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def untimed(table: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in table]


def test_two_epochs_learn_and_write_one_row_per_epoch(tmp_path: Path):
    lines: list[str] = []
    result = run_trial(variant(tmp_path), 0, tmp_path / "t", progress=False, log=lines.append)
    assert result["top1"] > 20, result  # chance is 10 %
    assert result["epochs"] == 2 and result["device"] == "cpu" and result["ema_top1"] is None
    assert result["top1_best"] >= result["top1"] and result["top5_best"] >= result["top5"]
    assert result["params"] > 0 and result["train_img_per_s"] > 0 and result["infer_img_per_s"] > 0
    assert result["peak_mem_mb"] > 0 and result["wall_seconds"] > 0
    table = rows(tmp_path / "t")
    assert [r["epoch"] for r in table] == ["1", "2"]
    assert list(table[0]) == list(checkpoint.COLUMNS)
    assert float(table[1]["top1"]) == pytest.approx(result["top1"])
    assert len([line for line in lines if line.startswith("epoch ")]) == 2
    assert (tmp_path / "t" / "checkpoint.pt").is_file()


def test_same_seed_same_metrics_other_seed_differs(tmp_path: Path):
    v = variant(tmp_path)
    a = run_trial(v, 3, tmp_path / "a", progress=False)
    b = run_trial(v, 3, tmp_path / "b", progress=False)
    run_trial(v, 4, tmp_path / "c", progress=False)
    assert untimed(rows(tmp_path / "a")) == untimed(rows(tmp_path / "b"))
    assert (a["top1"], a["loss"]) == (b["top1"], b["loss"])
    assert untimed(rows(tmp_path / "a")) != untimed(rows(tmp_path / "c"))


def test_modern_recipe_runs_with_every_technique(tmp_path: Path):
    """Mixup + CutMix + label smoothing (soft-target loss), RandAugment, erasing, EMA, drop path, clipping."""
    v = variant(tmp_path, "recipe.preset=modern", "recipe.epochs=2", "recipe.warmup_epochs=1", "recipe.lr=0.004",
                "recipe.ema=0.9", "recipe.clip_grad=1.0", "recipe.crop_scale=[0.35, 1.0]")
    assert v.recipe.mixup > 0 and v.recipe.randaugment and v.train_net.drop_path == 0.1
    result = run_trial(v, 0, tmp_path / "t", progress=False)
    table = rows(tmp_path / "t")
    assert result["ema_top1"] is not None and table[1]["ema_top1"] != "" and table[1]["ema_top5"] != ""
    # lr of each epoch's first step: timm's warmup start, then half way down the cosine (16 of 32 steps)
    assert float(table[0]["lr"]) == pytest.approx(1e-5)
    assert float(table[1]["lr"]) == pytest.approx((0.004 + v.recipe.min_lr) / 2)


def test_step_schedule_and_sgd(tmp_path: Path):
    v = variant(tmp_path, "recipe.epochs=3", "recipe.sched=step", "recipe.decay_milestones=[1, 2]")
    run_trial(v, 0, tmp_path / "t", progress=False)
    lrs = [float(r["lr"]) for r in rows(tmp_path / "t")]
    assert lrs == pytest.approx([0.1, 0.01, 0.001])  # lr of each epoch's first step: x0.1 per milestone


def test_nan_loss_fails_the_trial_naming_epoch_and_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    build = engine.build_model
    calls = {"n": 0}

    def poisoned(v, data):
        model = build(v, data)

        def hook(module, args, out):
            if module.training:
                calls["n"] += 1
                if calls["n"] == 16 + 3:  # 16 steps per epoch: epoch 2, step 3
                    return out * float("nan")
            return out

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(engine, "build_model", poisoned)
    with pytest.raises(TrialFailed, match=r"non-finite loss \(nan\) at epoch 2, step 3"):
        run_trial(variant(tmp_path), 0, tmp_path / "t", progress=False)


def test_huge_learning_rate_fails_the_trial(tmp_path: Path):
    v = variant(tmp_path, "recipe.lr=1e30", "recipe.momentum=0.99")
    with pytest.raises(TrialFailed, match=r"non-finite loss \((nan|inf)\) at epoch \d+, step \d+"):
        run_trial(v, 0, tmp_path / "t", progress=False)


class StopAfter(threading.Event):
    """A stop request that arrives after `n` checks (the engine checks once per step)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        return self.n < 0 or super().is_set()


@pytest.mark.parametrize("where", [pytest.param("epoch end", marks=pytest.mark.slow), "mid-epoch"])
def test_interrupted_trial_resumes_to_the_same_result(tmp_path: Path, where: str):
    v = variant(tmp_path, "recipe.epochs=3", "recipe.preset=modern", "recipe.warmup_epochs=1", "recipe.lr=0.004",
                "recipe.ema=0.9")
    full = run_trial(v, 0, tmp_path / "full", progress=False)

    trial = tmp_path / "resumed"
    if where == "epoch end":  # a stop asked while epoch 1 ends: the epoch-1 checkpoint is kept
        stop = threading.Event()
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)
            if line.startswith("epoch 1/"):
                stop.set()
    else:  # 16 steps per epoch: stop after step 21 = epoch 2, step 5
        stop, log = StopAfter(21), None
    with pytest.raises(KeyboardInterrupt):
        run_trial(v, 0, trial, progress=False, stop=stop, log=log)
    ck = torch.load(trial / "checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["step"]) == ((1, 0) if where == "epoch end" else (1, 5))
    assert [r["epoch"] for r in rows(trial)] == ["1"]
    with open(trial / "metrics.csv", "a") as f:  # a row the checkpoint never saw (e.g. killed mid-write)
        f.write("2,0,0,0,0,0,,,0,0\n")

    lines = []
    resumed = run_trial(v, 0, trial, progress=False, log=lines.append)
    assert lines[0].startswith("resuming from") and ("epoch 2" in lines[0])
    assert [line.split(":")[0] for line in lines[1:]] == ["epoch 2/3", "epoch 3/3"]  # not from zero
    assert untimed(rows(trial)) == untimed(rows(tmp_path / "full"))
    for key in ("top1", "top5", "top1_best", "ema_top1", "loss", "epochs"):
        assert resumed[key] == full[key], key


def test_finished_trial_is_not_retrained(tmp_path: Path):
    v = variant(tmp_path, "recipe.epochs=1")
    first = run_trial(v, 0, tmp_path / "t", progress=False)
    lines: list[str] = []
    again = run_trial(v, 0, tmp_path / "t", progress=False, log=lines.append)
    assert not [line for line in lines if line.startswith("epoch ")]
    assert again["top1"] == first["top1"] and again["epochs"] == 1


def test_inference_throughput_is_timed_on_the_evaluations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A trial's infer_img_per_s is the median of its epochs' evaluation rates (no separate timing pass); a
    checkpoint whose epochs carry no rate (written before they were timed) falls back to one."""
    def no_pass(*_a, **_k):
        raise AssertionError("a separate inference timing pass ran")

    monkeypatch.setattr(engine, "infer_throughput", no_pass)
    v = variant(tmp_path, "recipe.epochs=3")
    result = run_trial(v, 0, tmp_path / "t", progress=False)
    per_epoch = sorted(float(r["infer_img_per_s"]) for r in rows(tmp_path / "t"))
    assert len(per_epoch) == 3 and per_epoch[0] > 0
    assert result["infer_img_per_s"] == pytest.approx(per_epoch[1])  # the median of three

    ck = torch.load(tmp_path / "t" / "checkpoint.pt", weights_only=True)
    for row in ck["history"]:
        del row["infer_img_per_s"]
    torch.save(ck, tmp_path / "t" / "checkpoint.pt")
    monkeypatch.setattr(engine, "infer_throughput", lambda *_a, **_k: 123.0)
    assert run_trial(v, 0, tmp_path / "t", progress=False)["infer_img_per_s"] == 123.0


def test_timm_model_variant(tmp_path: Path):
    path = tmp_path / "study.yaml"
    path.write_text(TINY.replace("model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, "
                                 "expansion: 1}", "model: {timm: resnet10t}"))
    v = load_study(path, ["recipe.epochs=1", "data.train_subset=64", "data.val_subset=32"]).variants[0]
    result = run_trial(v, 0, tmp_path / "t", progress=False)
    assert result["params"] > 1e6 and result["epochs"] == 1


def test_modern_recipe_defaults_are_the_papers():
    ref = yaml.safe_load(REFERENCE.read_text())
    modern = Recipe(preset="modern")
    assert modern.opt == ref["optimizer"].lower() == "adamw"
    assert modern.base_lr == ref["base_lr"] == 4e-3 and modern.base_batch == ref["batch_size"] == 4096
    assert modern.weight_decay == ref["weight_decay"] == 0.05
    assert modern.epochs == ref["epochs"] == 300 and modern.warmup_epochs == ref["warmup_epochs"] == 20
    assert modern.sched == "cosine" and ref["lr_schedule"] == "cosine decay"
    assert modern.randaugment == "rand-m9-mstd0.5-inc1"
    assert modern.mixup == ref["mixup"] == 0.8 and modern.cutmix == ref["cutmix"] == 1.0
    assert modern.random_erasing == ref["random_erasing"] == 0.25
    assert modern.label_smoothing == ref["label_smoothing"] == 0.1
    assert modern.drop_path == ref["stochastic_depth"]["T"] == 0.1
    assert modern.ema == ref["ema"] == 0.9999 and modern.clip_grad is None
    assert modern.learning_rate == pytest.approx(4e-3 * 128 / 4096)  # linear scaling to the batch used
    classic = Recipe(preset="classic")
    assert (classic.opt, classic.momentum, classic.base_lr, classic.base_batch) == ("sgd", 0.9, 0.1, 256)
    assert (classic.weight_decay, classic.epochs, classic.sched, classic.decay_milestones) == (1e-4, 90, "step",
                                                                                               (30, 60, 80))
    assert classic.mixup == classic.cutmix == classic.random_erasing == classic.label_smoothing == 0
    assert classic.randaugment is None and classic.ema is None


def test_unreadable_or_foreign_checkpoint_starts_over(tmp_path: Path):
    v = variant(tmp_path, "recipe.epochs=1")
    trial = tmp_path / "t"
    trial.mkdir()
    (trial / "checkpoint.pt").write_bytes(b"not a checkpoint")
    lines: list[str] = []
    first = run_trial(v, 0, trial, progress=False, log=lines.append)
    assert lines[0].startswith("ignoring unreadable") and first["epochs"] == 1
    lines = []
    other = run_trial(v, 1, trial, progress=False, log=lines.append)  # another seed's checkpoint: not resumed
    assert lines[0].startswith("ignoring") and "'seed': 0" in lines[0] and other["epochs"] == 1


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="per-trial CPU peak needs Linux /proc")
def test_cpu_peak_memory_is_the_trials_own_not_the_workers() -> None:
    def rss_mb() -> float:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    cpu = torch.device("cpu")
    spike = torch.ones(64 * 2**20) + 1  # a 256 MiB temporary: the high-water mark rises past what is held after
    del spike
    assert metrics.peak_memory_mb(cpu) > rss_mb() - 1
    assert metrics.reset_peak_memory(cpu)
    after = metrics.peak_memory_mb(cpu)
    assert abs(after - rss_mb()) < 50, (after, rss_mb())  # the mark restarts at what the process holds now
    held = [torch.ones(32 * 2**20) for _ in range(2)]  # 256 MiB held in the new "trial"
    assert metrics.peak_memory_mb(cpu) >= max(after, rss_mb()) - 1  # the mark follows what the trial holds
    del held
