"""Train and evaluate one variant x seed: timm's optimizer, schedule, mixup, losses and EMA.

`run_trial` is resumable: every epoch ends with `checkpoint.pt` (written atomically), and a
`stop` request writes one mid-epoch. A later call with the same `trial_dir` continues from
there, and the result is bit-identical on CPU to an uninterrupted run: every epoch re-seeds
the global RNGs from (seed, epoch), and a mid-epoch resume replays the epoch's remaining
batches after regenerating (not training on) the ones already done, then restores the RNG
states saved at the stop.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ablate.config.load import Variant

from .data import Data, _seed_of, load_data

COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "top1", "top5", "ema_top1", "ema_top5",
           "epoch_seconds", "train_img_per_s")
_MOMENTUM_OPTS = {"sgd", "nesterov", "momentum", "sgdp", "sgdw", "rmsprop", "rmsproptf", "lars", "larc",
                  "nlars", "nlarc", "lamb"}


class TrialFailed(Exception):
    """The trial's own fault (e.g. a non-finite loss): recorded as failed, the sweep goes on."""


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(variant: Variant, data: Data) -> nn.Module:
    if variant.train_net is not None:
        from ablate.nn.net import build

        return build(variant.train_net)
    import timm

    kwargs: dict[str, Any] = dict(num_classes=data.num_classes, in_chans=data.in_chans)
    optional: dict[str, Any] = {"img_size": data.image_size}
    if variant.recipe.drop_path is not None:
        optional["drop_path_rate"] = variant.recipe.drop_path
    while True:  # not every timm model takes img_size / drop_path_rate: drop what it refuses
        try:
            return timm.create_model(variant.timm, pretrained=False, **kwargs, **optional)
        except TypeError as e:
            refused = [k for k in optional if k in str(e)]
            if not refused:
                raise
            for k in refused:
                optional.pop(k)


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _WriteAll:
    """The file torch.save writes to, so that a full disk is an OSError (ENOSPC) and the worker leaves the
    trial resumable: given a path or a Python file, torch reports it as a RuntimeError ("unexpected pos"),
    which reads as the trial's own fault. Errors are kept here (never raised into torch's C++ writer, which
    would swallow them) and raised by `_save` once torch.save returns."""

    def __init__(self, raw: Any, name: Path):
        self.raw, self.name = raw, name
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view) and self.error is None:
            try:
                n = self.raw.write(view[done:])
            except OSError as e:
                self.error = e
                break
            if not n:
                import errno

                self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.name))
            done += n or 0
        return len(view)

    def flush(self) -> None:
        if self.error is None:
            try:
                self.raw.flush()
            except OSError as e:
                self.error = e


def _save(path: Path, payload: dict[str, Any]) -> None:
    """Atomically; a full disk is an OSError (ENOSPC), never torch's RuntimeError (see `_WriteAll`). No temp
    file is left behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb", buffering=0) as f:
            out = _WriteAll(f, tmp)
            try:
                torch.save(payload, out)
            except RuntimeError:
                if out.error is None:
                    raise
            if out.error is not None:
                if out.error.filename is None:
                    out.error.filename = str(tmp)
                raise out.error
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _global_mean(loss: torch.Tensor, n_local: int, n_global: int) -> float:
    """The whole batch's mean loss from every rank's slice (all ranks get the same value, so a
    non-finite loss stops every rank at the same step)."""
    import torch.distributed as tdist

    total = loss.detach().float() * n_local
    tdist.all_reduce(total)
    return total.item() / n_global


_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> bool:
    """Start a trial's own peak. CUDA: the allocator's peak stats. CPU on Linux: the kernel's RSS high-water
    mark (VmHWM), reset by writing 5 to /proc/self/clear_refs (exact and free, unlike a sampling thread;
    psutil has no reset). Returns False where no reset exists (peak_memory_mb is then process-wide)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    if device.type == "cpu":
        try:
            _CLEAR_REFS.write_text("5")
            return True
        except OSError:
            return False
    return False


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max_memory_allocated since reset_peak_memory. MPS: driver-allocated memory now. CPU: peak RSS
    since reset_peak_memory (Linux VmHWM); elsewhere the process's all-time ru_maxrss."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


@torch.inference_mode()
def evaluate(model: nn.Module, data: Data, device: torch.device, amp: contextlib.AbstractContextManager
             ) -> dict[str, float]:
    from timm.utils import accuracy

    model.eval()
    loss_sum, c1, c5, n = 0.0, 0.0, 0.0, 0
    k5 = min(5, data.num_classes)
    for x, y in data.val.epoch(0):
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            out = model(x)
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        a1, a5 = accuracy(out, y, topk=(1, k5))
        c1 += a1.item() * len(y) / 100
        c5 += a5.item() * len(y) / 100
        n += len(y)
    return {"loss": loss_sum / n, "top1": 100 * c1 / n, "top5": 100 * c5 / n}


@torch.inference_mode()
def infer_throughput(model: nn.Module, batch: int, data: Data, device: torch.device,
                     amp: contextlib.AbstractContextManager, max_batches: int = 30, max_seconds: float = 2.0
                     ) -> float:
    """Images/s in eval mode at `batch`: 2 warm-up batches, then the median rate of 5 to max_batches timed
    batches (as many as fit in max_seconds)."""
    model.eval()
    x = torch.randn(batch, data.in_chans, data.image_size, data.image_size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    for _ in range(2):
        with amp:
            model(x)
    sync()
    # Each batch timed on its own; the median of the per-batch rates (as timm's benchmark reports a spread
    # over repetitions): one slow batch on a shared machine does not move it, as it moves a mean over 10.
    rates: list[float] = []
    t0 = time.perf_counter()
    while len(rates) < max_batches and (len(rates) < 5 or time.perf_counter() - t0 < max_seconds):
        t = time.perf_counter()
        with amp:
            model(x)
        sync()
        rates.append(batch / (time.perf_counter() - t))
    return statistics.median(rates)


def run_trial(variant: Variant, seed: int, trial_dir: Path, *, device: str | None = None, threads: int | None = None,
              progress: bool = True, stop: threading.Event | None = None,
              log: Callable[[str], None] | None = None, dist: tuple[int, int] | None = None,
              on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train `variant` with `seed`; per-epoch rows in trial_dir/metrics.csv; returns the final metrics.

    `on_epoch(row)` is called with each epoch's metrics.csv row as the epoch finishes (a resumed trial first
    gets the rows of the epochs its checkpoint holds); on rank 0 only.

    `dist=(rank, world)`: one process of a data-parallel trial (torch.distributed already
    initialised by the caller). Every rank builds the same batches and trains on its slice of each
    (DDP averages the gradients: the update of one big batch); rank 0 alone writes files.
    """
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3, dispatch_clip_grad
    from tqdm import tqdm

    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = trial_dir / "checkpoint.pt", trial_dir / "metrics.csv"
    dev = pick_device(device)
    if threads:
        torch.set_num_threads(threads)
    reset_peak_memory(dev)  # this trial's own peak, not the worker's earlier trials'
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    recipe = variant.recipe
    seed_everything(seed)

    rank, world = dist or (0, 1)
    writer = rank == 0
    if not writer:
        progress, say = False, (lambda _msg: None)
    data = load_data(variant.data, recipe, seed, dev)
    model = build_model(variant, data).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if dev.type == "cuda":  # BatchNorm statistics over the whole batch (SyncBatchNorm is CUDA-only)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    amp: Any = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext())

    opt_kwargs: dict[str, Any] = {}
    if recipe.opt.lower().split("_")[-1] in _MOMENTUM_OPTS:
        opt_kwargs["momentum"] = recipe.momentum
    try:  # torch's fused kernels (AdamW, Adam, SGD): one kernel per tensor instead of ~10 (-8 % of a proxy step)
        optimizer = create_optimizer_v2(model, opt=recipe.opt, lr=recipe.learning_rate,
                                        weight_decay=recipe.weight_decay, fused=dev.type in ("cpu", "cuda"),
                                        **opt_kwargs)
    except (TypeError, RuntimeError, ValueError):  # an optimizer (or device) without a fused implementation
        optimizer = create_optimizer_v2(model, opt=recipe.opt, lr=recipe.learning_rate,
                                        weight_decay=recipe.weight_decay, **opt_kwargs)
    steps_per_epoch = len(data.train)
    if recipe.sched == "step":
        sched_kwargs: dict[str, Any] = dict(sched="multistep", decay_milestones=list(recipe.decay_milestones),
                                            decay_rate=0.1)
    else:
        sched_kwargs = dict(sched="cosine")
    scheduler, _ = create_scheduler_v2(optimizer, num_epochs=recipe.epochs, warmup_epochs=recipe.warmup_epochs,
                                       min_lr=recipe.min_lr, step_on_epochs=False,
                                       updates_per_epoch=steps_per_epoch, **sched_kwargs)
    if recipe.warmup_epochs >= recipe.epochs:
        say(f"warning: warmup_epochs {recipe.warmup_epochs:g} >= epochs {recipe.epochs}: the lr never leaves warmup")
    mixup = None
    if recipe.mixup > 0 or recipe.cutmix > 0:
        mixup = Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, label_smoothing=recipe.label_smoothing,
                      num_classes=data.num_classes)
        criterion: nn.Module = SoftTargetCrossEntropy()
    elif recipe.label_smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    else:
        criterion = nn.CrossEntropyLoss()
    ema = ModelEmaV3(model, decay=recipe.ema) if recipe.ema is not None else None

    # ---- resume
    history: list[dict[str, Any]] = []
    start_epoch, skip_steps, partial, prior_wall, resume_rng = 0, 0, None, 0.0, None
    num_updates = 0
    fingerprint = {"variant": variant.id, "seed": seed}
    if ckpt_path.exists():
        # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest to the model's device
        try:
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - unreadable (written by another version?): start over
            say(f"ignoring unreadable {ckpt_path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            ck = {}
        if not ck:
            pass
        elif ck.get("fingerprint") != fingerprint:
            say(f"ignoring {ckpt_path}: it belongs to {ck.get('fingerprint')}, not {fingerprint}")
        else:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            if ema is not None and ck.get("ema") is not None:
                ema.load_state_dict(ck["ema"])
            history, prior_wall, num_updates = ck["history"], ck["wall_seconds"], ck["num_updates"]
            start_epoch, skip_steps, partial = ck["epoch"], ck["step"], ck.get("partial")
            resume_rng = ck["rng"]
            where = f"epoch {start_epoch + 1}" + (f", step {skip_steps + 1}" if skip_steps else "")
            say(f"resuming from {ckpt_path} at {where}")
    if writer:
        _write_metrics(metrics_path, history)  # drops rows of epochs the checkpoint does not have
        for done in history if on_epoch is not None else []:
            on_epoch(done)

    def checkpoint(epoch: int, step: int, partial: dict[str, Any] | None) -> None:
        if not writer:
            return
        _save(ckpt_path, {
            "fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
            "epoch": epoch, "step": step, "partial": partial, "num_updates": num_updates, "history": history,
            "rng": _rng_state(), "wall_seconds": prior_wall + time.perf_counter() - t_start})

    # ---- train
    for epoch in range(start_epoch, recipe.epochs):
        seed_everything(_seed_of(seed, epoch, 2))  # an epoch depends on (seed, epoch) only: exact resume
        train_model.train()
        t_epoch = time.perf_counter()
        acc = partial or {"loss_sum": 0.0, "images": 0, "train_seconds": 0.0, "epoch_seconds": 0.0}
        partial = None
        batches = data.train.epoch(epoch)
        if skip_steps:  # mid-epoch resume: regenerate the batches already trained on, then the saved RNGs
            for _ in range(skip_steps):
                next(batches)
            _set_rng_state(resume_rng)
        data_before = data.train.data_seconds
        bar = tqdm(total=steps_per_epoch, initial=skip_steps, desc=f"epoch {epoch + 1}/{recipe.epochs}",
                   leave=False, file=sys.stderr, disable=None if progress else True, dynamic_ncols=True)
        t_train = time.perf_counter()
        # the epoch's lr as reported: that of its first step (a step schedule reads 0.1, 0.01, ...)
        lr = acc.get("lr", optimizer.param_groups[0]["lr"])
        acc["lr"] = lr
        step = skip_steps
        skip_steps = 0
        try:
            for x, y in batches:
                if mixup is not None and len(x) % 2:  # timm's batch mixup pairs images: needs an even batch
                    x, y = x[:-1], y[:-1]
                if dev.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                target = y
                if mixup is not None:
                    x, target = mixup(x, y)
                n_global = len(x)
                if world > 1:  # the same global batch on every rank (same seeds): each trains on its slice
                    x, target = x.tensor_split(world)[rank], target.tensor_split(world)[rank]
                with amp:
                    out = train_model(x)
                    loss = criterion(out.float(), target)
                loss_value = loss.item() if world == 1 else _global_mean(loss, len(x), n_global)
                if not math.isfinite(loss_value):
                    raise TrialFailed(f"non-finite loss ({loss_value}) at epoch {epoch + 1}, step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.clip_grad is not None:
                    dispatch_clip_grad(model.parameters(), recipe.clip_grad, mode="norm")
                optimizer.step()
                num_updates += 1
                scheduler.step_update(num_updates=num_updates)
                if ema is not None:
                    ema.update(model, step=num_updates)
                acc["loss_sum"] += loss_value * n_global
                acc["images"] += n_global
                step += 1
                bar.update(1)
                if stop is not None and stop.is_set() and step < steps_per_epoch:
                    now = time.perf_counter()
                    acc["train_seconds"] += now - t_train
                    acc["epoch_seconds"] += now - t_epoch
                    checkpoint(epoch, step, acc)
                    say(f"stopped at epoch {epoch + 1}, step {step}; checkpoint in {ckpt_path}")
                    raise KeyboardInterrupt
        finally:
            bar.close()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_seconds = acc["train_seconds"] + time.perf_counter() - t_train
        data_share = (data.train.data_seconds - data_before) / max(time.perf_counter() - t_train, 1e-9)
        scheduler.step(epoch + 1)
        metrics = evaluate(model, data, dev, amp)
        ema_metrics = evaluate(ema.module, data, dev, amp) if ema is not None else None
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": acc["loss_sum"] / max(acc["images"], 1),
               "val_loss": metrics["loss"], "top1": metrics["top1"], "top5": metrics["top5"],
               "ema_top1": ema_metrics["top1"] if ema_metrics else None,
               "ema_top5": ema_metrics["top5"] if ema_metrics else None,
               "epoch_seconds": acc["epoch_seconds"] + time.perf_counter() - t_epoch,
               "train_img_per_s": acc["images"] / max(train_seconds, 1e-9)}
        history.append(row)
        checkpoint(epoch + 1, 0, None)
        if writer:
            _write_metrics(metrics_path, history)
            if on_epoch is not None:
                on_epoch(row)
        ema_txt = f" ema {row['ema_top1']:.2f}" if ema_metrics else ""
        say(f"epoch {epoch + 1}/{recipe.epochs}: loss {row['train_loss']:.4f} val {row['val_loss']:.4f} "
            f"top1 {row['top1']:.2f} top5 {row['top5']:.2f}{ema_txt} lr {lr:.3g} "
            f"{row['train_img_per_s']:.0f} img/s data {data_share:.1%} {row['epoch_seconds']:.1f}s")
        if stop is not None and stop.is_set() and epoch + 1 < recipe.epochs:
            say(f"stopped after epoch {epoch + 1}; checkpoint in {ckpt_path}")
            raise KeyboardInterrupt

    # ---- results
    if not history:
        raise TrialFailed("no epoch was trained")
    last = history[-1]
    speeds = sorted(r["train_img_per_s"] for r in (history[1:] if len(history) > 1 else history))
    infer = infer_throughput(model, recipe.batch_size, data, dev, amp)
    return {
        "top1": last["top1"], "top5": last["top5"],
        "top1_best": max(r["top1"] for r in history), "top5_best": max(r["top5"] for r in history),
        "ema_top1": last["ema_top1"], "loss": last["val_loss"], "epochs": len(history),
        "train_img_per_s": speeds[len(speeds) // 2], "infer_img_per_s": infer,
        "peak_mem_mb": peak_memory_mb(dev), "wall_seconds": prior_wall + time.perf_counter() - t_start,
        "device": dev.type, "params": params,
    }
