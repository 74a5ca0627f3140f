"""Train and evaluate one variant x seed: timm's optimizer, schedule, mixup, losses and EMA.

`run_trial` is resumable: every epoch ends with `checkpoint.pt` (written atomically), and a
`stop` request writes one mid-epoch. A later call with the same `trial_dir` continues from
there, and the result is bit-identical on CPU to an uninterrupted run: every epoch re-seeds
the global RNGs from (seed, epoch), and a mid-epoch resume replays the epoch's remaining
batches after regenerating (not training on) the ones already done, then restores the RNG
states saved at the stop.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from ablate.config.variant import Variant
from ablate.measure.bench import resolve_device

from . import checkpoint
from .accumulate import accumulate
from .checkpoint import Disowned, rng_state, set_rng_state, write_metrics
from .data import Data, load_data
from .datasets import _seed_of
from .metrics import evaluate, infer_throughput, peak_memory_mb, reset_peak_memory
from .precision import train_autocast

_MOMENTUM_OPTS = {"sgd", "nesterov", "momentum", "sgdp", "sgdw", "rmsprop", "rmsproptf", "lars", "larc",
                  "nlars", "nlarc", "lamb"}


class TrialFailed(Exception):
    """The trial's own fault (e.g. a non-finite loss): recorded as failed, the sweep goes on."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(variant: Variant, data: Data) -> nn.Module:
    if variant.train_net is not None:
        from ablate.nn.net import build

        return build(variant.train_net)
    from ablate.nn.timm_scale import create

    return create(variant.timm, variant.timm_scale, num_classes=data.num_classes, in_chans=data.in_chans,
                  img_size=data.image_size, drop_path_rate=variant.recipe.drop_path)


def _global_mean(loss: torch.Tensor, n_local: int, n_global: int) -> float:
    """The whole batch's mean loss from every rank's slice (all ranks get the same value, so a
    non-finite loss stops every rank at the same step)."""
    import torch.distributed as tdist

    total = loss.detach().float() * n_local
    tdist.all_reduce(total)
    return total.item() / n_global



def _optimizer(model: nn.Module, recipe: Any, dev: torch.device) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    kwargs: dict[str, Any] = dict(opt=recipe.opt, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    if recipe.opt.lower().split("_")[-1] in _MOMENTUM_OPTS:
        kwargs["momentum"] = recipe.momentum
    try:  # torch's fused kernels (AdamW, Adam, SGD): one kernel per tensor instead of ~10 (-8 % of a proxy step)
        return create_optimizer_v2(model, fused=dev.type in ("cpu", "cuda"), **kwargs)
    except (TypeError, RuntimeError, ValueError):  # an optimizer (or device) without a fused implementation
        return create_optimizer_v2(model, **kwargs)


def _scheduler(optimizer: torch.optim.Optimizer, recipe: Any, steps_per_epoch: int) -> Any:
    from timm.scheduler import create_scheduler_v2

    if recipe.sched == "step":
        kwargs: dict[str, Any] = dict(sched="multistep", decay_milestones=list(recipe.decay_milestones),
                                      decay_rate=0.1)
    else:
        kwargs = dict(sched="cosine")
    scheduler, _ = create_scheduler_v2(optimizer, num_epochs=recipe.epochs, warmup_epochs=recipe.warmup_epochs,
                                       min_lr=recipe.min_lr, step_on_epochs=False,
                                       updates_per_epoch=steps_per_epoch, **kwargs)
    return scheduler


def _loss(recipe: Any, num_classes: int) -> tuple[Any, nn.Module]:
    """timm's batch Mixup/CutMix (or None) and the matching criterion."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if recipe.mixup > 0 or recipe.cutmix > 0:
        mixup = Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, label_smoothing=recipe.label_smoothing,
                      num_classes=num_classes)
        return mixup, SoftTargetCrossEntropy()
    if recipe.label_smoothing > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    return None, nn.CrossEntropyLoss()


class _Trial:
    """One trial's training state: built in `__init__`, restored by `resume`, advanced by `train_epoch` and
    `end_epoch`, saved by `checkpoint`, summarised by `summary`. Construction order is fixed (data, model,
    optimizer, ...): the model's initial weights come from the global RNG seeded just before."""

    def __init__(self, variant: Variant, seed: int, trial_dir: Path, dev: torch.device,
                 dist: tuple[int, int] | None, say: Callable[[str], None], t_start: float, owner: Any = None):
        from timm.utils import ModelEmaV3

        self.variant, self.recipe, self.seed, self.dev, self.say, self.t_start = (
            variant, variant.recipe, seed, dev, say, t_start)
        self.ckpt_path, self.metrics_path = trial_dir / "checkpoint.pt", trial_dir / "metrics.csv"
        self.rank, self.world = dist or (0, 1)
        self.writer, self.owner = self.rank == 0, owner
        self.data = load_data(variant.data, self.recipe, seed, dev)
        self.model = build_model(variant, self.data).to(dev)
        if dev.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.train_model = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            if dev.type == "cuda":  # BatchNorm statistics over the whole batch (SyncBatchNorm is CUDA-only)
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.train_model = DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda"
                                                       else None)
        self.amp: Any = train_autocast(dev, self.recipe.precision)
        self.optimizer = _optimizer(self.model, self.recipe, dev)
        self.steps_per_epoch = len(self.data.train)
        # images per forward/backward pass: the process's share of the global batch unless the recipe says less
        self.micro = self.recipe.micro_batch or -(-self.recipe.batch_size // self.world)
        self.scheduler = _scheduler(self.optimizer, self.recipe, self.steps_per_epoch)
        if self.recipe.warmup_epochs >= self.recipe.epochs:
            say(f"warning: warmup_epochs {self.recipe.warmup_epochs:g} >= epochs {self.recipe.epochs}: "
                "the lr never leaves warmup")
        self.mixup, self.criterion = _loss(self.recipe, self.data.num_classes)
        self.ema = ModelEmaV3(self.model, decay=self.recipe.ema) if self.recipe.ema is not None else None
        self.history: list[dict[str, Any]] = []
        self.start_epoch, self.skip_steps, self.num_updates = 0, 0, 0
        self.partial: dict[str, Any] | None = None
        self.prior_wall, self.resume_rng = 0.0, None
        self.fingerprint = {"variant": variant.id, "seed": seed}
        self.t_epoch = t_start

    def resume(self, on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
        """Continue from checkpoint.pt when it belongs to this (variant, seed); else start over."""
        path = self.ckpt_path
        ck: dict[str, Any] = {}
        if path.exists():
            # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest to the model's device
            try:
                ck = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - unreadable (written by another version?): start over
                self.say(f"ignoring unreadable {path}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}")
            if ck and ck.get("fingerprint") != self.fingerprint:
                self.say(f"ignoring {path}: it belongs to {ck.get('fingerprint')}, not {self.fingerprint}")
                ck = {}
        if ck:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.scheduler.load_state_dict(ck["scheduler"])
            if self.ema is not None and ck.get("ema") is not None:
                self.ema.load_state_dict(ck["ema"])
            self.history, self.prior_wall, self.num_updates = ck["history"], ck["wall_seconds"], ck["num_updates"]
            self.start_epoch, self.skip_steps, self.partial = ck["epoch"], ck["step"], ck.get("partial")
            self.resume_rng = ck["rng"]
            where = f"epoch {self.start_epoch + 1}" + (f", step {self.skip_steps + 1}" if self.skip_steps else "")
            self.say(f"resuming from {path} at {where}")
        if self.writer:
            write_metrics(self.metrics_path, self.history)  # drops rows of epochs the checkpoint does not have
            for done in self.history if on_epoch is not None else []:
                on_epoch(done)

    def checkpoint(self, epoch: int, step: int, partial: dict[str, Any] | None) -> None:
        if not self.writer:
            return
        if self.owner is not None and not self.owner():  # every later write of the trial's files follows this one
            raise Disowned(f"{self.ckpt_path.parent.name} is no longer this worker's: nothing of it written")
        ema = self.ema.state_dict() if self.ema is not None else None
        checkpoint.save(self.ckpt_path, {
            "fingerprint": self.fingerprint, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "ema": ema,
            "epoch": epoch, "step": step, "partial": partial, "num_updates": self.num_updates,
            "history": self.history, "rng": rng_state(),
            "wall_seconds": self.prior_wall + time.perf_counter() - self.t_start})

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The epoch's batches; after a mid-epoch resume, those not yet trained on (the ones before are
        regenerated, not trained on, then the RNG states saved at the stop are restored)."""
        batches = self.data.train.epoch(epoch)
        if self.skip_steps:
            for _ in range(self.skip_steps):
                next(batches)
            set_rng_state(self.resume_rng)
        return batches

    def step(self, x: Tensor, y: Tensor, epoch: int, step: int) -> tuple[float, int]:
        """One optimizer update on the global batch; returns (mean loss of the whole batch, its images)."""
        if self.mixup is not None and len(x) % 2:  # timm's batch mixup pairs images: needs an even batch
            x, y = x[:-1], y[:-1]
        if self.dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        target = y
        if self.mixup is not None:
            x, target = self.mixup(x, y)
        n_global = len(x)
        if self.world > 1:  # the same global batch on every rank (same seeds): each trains on its slice
            x, target = x.tensor_split(self.world)[self.rank], target.tensor_split(self.world)[self.rank]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._backward(x, target)
        loss_value = loss.item() if self.world == 1 else _global_mean(loss, len(x), n_global)
        if not math.isfinite(loss_value):
            raise TrialFailed(f"non-finite loss ({loss_value}) at epoch {epoch + 1}, step {step + 1}")
        if self.recipe.clip_grad is not None:
            from timm.utils import dispatch_clip_grad

            dispatch_clip_grad(self.model.parameters(), self.recipe.clip_grad, mode="norm")
        self.optimizer.step()
        self.num_updates += 1
        self.scheduler.step_update(num_updates=self.num_updates)
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)
        return loss_value, n_global

    def _backward(self, x: Tensor, target: Tensor) -> Tensor:
        """Gradients of this process's mean loss over its share of the batch, accumulated over micro-batches;
        returns that mean loss. Without `recipe.micro_batch`, a CUDA out-of-memory error halves the micro-batch
        and the share is done again (one process only: ranks that halved apart would no longer meet)."""
        while True:
            try:
                return accumulate(self.train_model, self.criterion, x, target, self.micro, self.amp, self.world > 1)
            except torch.cuda.OutOfMemoryError:
                if self.recipe.micro_batch is not None or self.world > 1 or self.micro == 1:
                    raise
            self.optimizer.zero_grad(set_to_none=True)  # outside the except: its frames no longer hold tensors
            torch.cuda.empty_cache()
            self.micro = (self.micro + 1) // 2
            self.say(f"out of memory: micro-batch {self.micro} images ({len(x)} per update, accumulated)")

    def train_epoch(self, epoch: int, progress: bool, stop: threading.Event | None
                    ) -> tuple[dict[str, Any], float, float]:
        """Train one epoch; returns (its accumulators, its training seconds, the data share of them).
        A `stop` request checkpoints mid-epoch and raises KeyboardInterrupt."""
        from tqdm import tqdm

        seed_everything(_seed_of(self.seed, epoch, 2))  # an epoch depends on (seed, epoch) only: exact resume
        self.train_model.train()
        t_epoch = time.perf_counter()
        acc = self.partial or {"loss_sum": 0.0, "images": 0, "train_seconds": 0.0, "epoch_seconds": 0.0}
        self.partial = None
        batches = self._batches(epoch)
        data_before = self.data.train.data_seconds
        step, self.skip_steps = self.skip_steps, 0
        bar = tqdm(total=self.steps_per_epoch, initial=step, desc=f"epoch {epoch + 1}/{self.recipe.epochs}",
                   leave=False, file=sys.stderr, disable=None if progress else True, dynamic_ncols=True)
        t_train = time.perf_counter()
        # the epoch's lr as reported: that of its first step (a step schedule reads 0.1, 0.01, ...)
        acc["lr"] = acc.get("lr", self.optimizer.param_groups[0]["lr"])
        try:
            for x, y in batches:
                loss_value, n = self.step(x, y, epoch, step)
                acc["loss_sum"] += loss_value * n
                acc["images"] += n
                step += 1
                bar.update(1)
                if stop is not None and stop.is_set() and step < self.steps_per_epoch:
                    now = time.perf_counter()
                    acc["train_seconds"] += now - t_train
                    acc["epoch_seconds"] += now - t_epoch
                    self.checkpoint(epoch, step, acc)
                    self.say(f"stopped at epoch {epoch + 1}, step {step}; checkpoint in {self.ckpt_path}")
                    raise KeyboardInterrupt
        finally:
            bar.close()
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        elapsed = max(time.perf_counter() - t_train, 1e-9)
        self.t_epoch = t_epoch  # the epoch's time ends in end_epoch, after evaluation
        return acc, acc["train_seconds"] + elapsed, (self.data.train.data_seconds - data_before) / elapsed

    def end_epoch(self, epoch: int, acc: dict[str, Any], train_seconds: float, data_share: float,
                  on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
        """Step the schedule, evaluate, append the epoch's row, checkpoint, report."""
        self.scheduler.step(epoch + 1)
        metrics = evaluate(self.model, self.data, self.dev, self.amp)
        ema = evaluate(self.ema.module, self.data, self.dev, self.amp) if self.ema is not None else None
        if not all(map(math.isfinite, losses := [m["loss"] for m in (metrics, ema) if m])):  # diverged (EMA too)
            raise TrialFailed(f"non-finite validation loss after epoch {epoch + 1} ({losses})")
        row = {"epoch": epoch + 1, "lr": acc["lr"], "train_loss": acc["loss_sum"] / max(acc["images"], 1),
               "val_loss": metrics["loss"], "top1": metrics["top1"], "top5": metrics["top5"],
               "ema_top1": ema["top1"] if ema else None, "ema_top5": ema["top5"] if ema else None,
               "epoch_seconds": acc["epoch_seconds"] + time.perf_counter() - self.t_epoch,
               "train_img_per_s": acc["images"] / max(train_seconds, 1e-9),
               "infer_img_per_s": metrics["img_per_s"]}  # the evaluation's own forward passes, timed
        self.history.append(row)
        self.checkpoint(epoch + 1, 0, None)
        if self.writer:  # (checked just now by checkpoint)
            write_metrics(self.metrics_path, self.history)
            if on_epoch is not None:
                on_epoch(row)
        ema_txt = f" ema {row['ema_top1']:.2f}" if ema else ""
        self.say(f"epoch {epoch + 1}/{self.recipe.epochs}: loss {row['train_loss']:.4f} val {row['val_loss']:.4f} "
                 f"top1 {row['top1']:.2f} top5 {row['top5']:.2f}{ema_txt} lr {row['lr']:.3g} "
                 f"{row['train_img_per_s']:.0f} img/s data {data_share:.1%} {row['epoch_seconds']:.1f}s")

    def summary(self) -> dict[str, Any]:
        if not self.history:
            raise TrialFailed("no epoch was trained")
        history, last = self.history, self.history[-1]
        speeds = sorted(r["train_img_per_s"] for r in (history[1:] if len(history) > 1 else history))
        # inference throughput: the median over the epochs' evaluations (each the median of its batches); a
        # checkpoint written before evaluations were timed has none: then a separate timing pass
        timed = sorted(r["infer_img_per_s"] for r in history if r.get("infer_img_per_s"))
        infer = (statistics.median(timed) if timed else
                 infer_throughput(self.model, self.data.val.batch_size, self.data, self.dev, self.amp))
        return {
            "top1": last["top1"], "top5": last["top5"],
            "top1_best": max(r["top1"] for r in history), "top5_best": max(r["top5"] for r in history),
            "ema_top1": last["ema_top1"], "loss": last["val_loss"], "epochs": len(history),
            "train_loss_sum": sum(r["train_loss"] for r in history),  # a readout (report/readouts.py)
            "train_img_per_s": speeds[len(speeds) // 2], "infer_img_per_s": infer,
            "peak_mem_mb": peak_memory_mb(self.dev), "device": self.dev.type, "params": self.params,
            "wall_seconds": self.prior_wall + time.perf_counter() - self.t_start,
        }


def run_trial(variant: Variant, seed: int, trial_dir: Path, *, device: str | None = None, threads: int | None = None,
              progress: bool = True, stop: threading.Event | None = None, owner: Callable[[], bool] | None = None,
              log: Callable[[str], None] | None = None, dist: tuple[int, int] | None = None,
              on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train `variant` with `seed`; per-epoch rows in trial_dir/metrics.csv; returns the final metrics.

    `on_epoch(row)` is called with each epoch's metrics.csv row as the epoch finishes (a resumed trial first
    gets the rows of the epochs its checkpoint holds); on rank 0 only. `owner()`: whether the trial is still ours.

    `dist=(rank, world)`: one process of a data-parallel trial (torch.distributed already
    initialised by the caller). Every rank builds the same batches and trains on its slice of each
    (DDP averages the gradients: the update of one big batch); rank 0 alone writes files.
    """
    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    reset_peak_memory(dev)  # this trial's own peak, not the worker's earlier trials'
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(seed)
    if dist is not None and dist[0] != 0:
        progress, say = False, (lambda _msg: None)
    trial = _Trial(variant, seed, trial_dir, dev, dist, say, t_start, owner)
    trial.resume(on_epoch)
    epochs = variant.recipe.epochs
    for epoch in range(trial.start_epoch, epochs):
        acc, train_seconds, data_share = trial.train_epoch(epoch, progress, stop)
        trial.end_epoch(epoch, acc, train_seconds, data_share, on_epoch)
        if stop is not None and stop.is_set() and epoch + 1 < epochs:
            say(f"stopped after epoch {epoch + 1}; checkpoint in {trial.ckpt_path}")
            raise KeyboardInterrupt
    return trial.summary()
