"""What a trial measures besides training: validation accuracy, inference throughput, peak memory."""

from __future__ import annotations

import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Data

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
    """Loss, top-1 and top-5 over the validation split, and `img_per_s`: the inference throughput of these
    very forward passes (eval mode, inference mode, the trial's amp and batch size), the median of the
    per-batch rates of the full-size batches (of every batch when none is full). Timing the evaluation the
    trial runs anyway replaces a separate timing pass on random input (~3 % of the quick proxy's time)."""
    from timm.utils import accuracy

    model.eval()
    loss_sum, c1, c5, n = 0.0, 0.0, 0.0, 0
    k5 = min(5, data.num_classes)
    rates: list[tuple[int, float]] = []  # (batch size, images/s) of each forward pass
    for x, y in data.val.epoch(0):
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        t = time.perf_counter()
        with amp:
            out = model(x)
        out = out.float()
        _sync(device)
        rates.append((len(y), len(y) / max(time.perf_counter() - t, 1e-9)))
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        a1, a5 = accuracy(out, y, topk=(1, k5))
        c1 += a1.item() * len(y) / 100
        c5 += a5.item() * len(y) / 100
        n += len(y)
    full = [r for b, r in rates if b == data.val.batch_size] or [r for _, r in rates]
    return {"loss": loss_sum / n, "top1": 100 * c1 / n, "top5": 100 * c5 / n, "img_per_s": statistics.median(full)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@torch.inference_mode()
def infer_throughput(model: nn.Module, batch: int, data: Data, device: torch.device,
                     amp: contextlib.AbstractContextManager, max_batches: int = 12, max_seconds: float = 1.0
                     ) -> float:
    """Images/s in eval mode at `batch` on random input: 2 warm-up batches, then the median rate of 5 to
    max_batches timed batches (as many as fit in max_seconds). A trial takes its inference throughput from its
    evaluations (`evaluate`'s img_per_s); this is the fallback for a trial resumed from a checkpoint written
    before evaluations were timed."""
    model.eval()
    x = torch.randn(batch, data.in_chans, data.image_size, data.image_size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    for _ in range(2):
        with amp:
            model(x)
    _sync(device)
    # Each batch timed on its own; the median of the per-batch rates (as timm's benchmark reports a spread
    # over repetitions): one slow batch on a shared machine does not move it, as it moves a mean over 10.
    rates: list[float] = []
    t0 = time.perf_counter()
    while len(rates) < max_batches and (len(rates) < 5 or time.perf_counter() - t0 < max_seconds):
        t = time.perf_counter()
        with amp:
            model(x)
        _sync(device)
        rates.append(batch / (time.perf_counter() - t))
    return statistics.median(rates)
