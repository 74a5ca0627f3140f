"""A network's speed measured like a benchmark: the network alone on a device, warmed up, at a fixed batch and
image size, one training step (forward, backward, SGD update) or one inference forward pass timed at a time.

This module times one network; `ablate.measure.bench_table` runs a study's variants through it (repetitions
interleaved across variants) and keeps the figures in results/<study>/bench.csv. What is timed is the network
as the design builds it (`ablate.nn.net.build`, or timm's model) — not the trial engine, whose CPU fast paths
make trials faster but would make the measured speed a property of ablate's code instead of the design.

Timing: on CUDA with CUDA events around a fixed number of iterations (then one synchronisation), on a CPU with
`time.perf_counter`. The number of iterations per measurement is fixed in the warm-up, from the time budget.
Precision: `fp32`, or autocast to `bf16` / `fp16` (weights stay fp32, as in mixed-precision training).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
MODES = ("infer", "train")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | None) -> torch.device:
    """The device asked for, or the best available (cuda, then mps, then cpu)."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cpu_flags_and_model() -> tuple[set[str], str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return set(), platform.processor() or "cpu"
    flags: set[str] = set()
    model = "cpu"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and not flags:
            flags = set(value.split())
        elif key.strip() == "model name" and model == "cpu":
            model = " ".join(value.split())
    return flags, model


def cpu_bf16_units() -> str | None:
    """The CPU's bf16 matrix units ('AMX' or 'AVX512-BF16'), or None: without them bf16 autocast on a CPU only
    adds casts (torch emulates bf16 matmuls), so it is not offered as the fast precision."""
    flags, _ = _cpu_flags_and_model()
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def fast_precision(dev: torch.device) -> str | None:
    """The device's fast precision: bf16 on CUDA when supported (else fp16), bf16 on a CPU with bf16 units."""
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if dev.type == "cpu":
        return "bf16" if cpu_bf16_units() else None
    return None


def device_name(dev: torch.device, threads: int) -> str:
    """The device in words, as the tables and charts name it: the GPU's name, or the CPU's model and threads."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        _, model = _cpu_flags_and_model()
        units = cpu_bf16_units()
        return f"{model} ({threads} thread{'s' * (threads != 1)}{', ' + units if units else ''})"
    return dev.type


def default_threads() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def autocast(dev: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=_DTYPES[precision])


def make_step(model: nn.Module, mode: str, precision: str, dev: torch.device, batch: int, image_size: int,
              in_chans: int, classes: int, plain: bool = True) -> Callable[[], None]:
    """One timed unit of work on a fixed random batch: an inference forward pass (eval mode, inference mode) or a
    training step (train mode: forward, cross-entropy, backward, SGD with momentum, gradients freed). `plain`:
    ablate's convs compute as PyTorch's own (`ablate.nn.kernels.plain_convs`), not by ablate's CPU fast paths."""
    from ablate.nn.kernels import plain_convs

    x = torch.randn(batch, in_chans, image_size, image_size, device=dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)  # as the trial engine runs on CUDA
    kernels = plain_convs if plain else contextlib.nullcontext
    if mode == "infer":
        def infer() -> None:
            model.eval()
            with torch.inference_mode(), autocast(dev, precision), kernels():
                model(x)
        return infer
    y = torch.randint(0, classes, (batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def train() -> None:
        model.train()
        with kernels():
            with autocast(dev, precision):
                loss = loss_fn(model(x), y)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    train.optimizer = opt  # type: ignore[attr-defined]  # its state counts toward the step's memory
    return train


def timed(step: Callable[[], None], dev: torch.device, iters: int) -> float:
    """Seconds for `iters` calls of `step`, everything queued on the device finished."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    if dev.type == "mps":
        torch.mps.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if dev.type == "mps":
        torch.mps.synchronize()
    return time.perf_counter() - t0


def warm_up(step: Callable[[], None], dev: torch.device, warmup: int, seconds: float) -> int:
    """Run `warmup` steps (at least 1: kernel selection, allocator, caches); from the last one's time, the
    iterations one measurement takes to fill `seconds` (at least 1)."""
    one = 0.0
    for _ in range(max(warmup, 1)):
        one = timed(step, dev, 1)
    return max(1, min(10_000, math.ceil(seconds / max(one, 1e-6))))


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _state_bytes(model: nn.Module, step: Callable[[], None]) -> int:
    """Weights and buffers, plus the optimizer's state for a training step."""
    total = _tensor_bytes(model.parameters()) + _tensor_bytes(model.buffers())
    opt = getattr(step, "optimizer", None)
    if opt is not None:
        total += sum(_tensor_bytes(s.values()) for s in opt.state.values())
    return total


def memory_mb(model: nn.Module, step: Callable[[], None], mode: str, dev: torch.device) -> tuple[float, str]:
    """Memory of one step (MiB) and how it was obtained. CUDA: the allocator's peak during the step, above what
    was allocated before it, plus this network's weights, buffers and optimizer state. Elsewhere an estimate from
    the tensors themselves (no allocator statistics): weights, buffers, optimizer state, gradients and the
    activations saved for backward (train), or weights plus the largest layer input + output (infer)."""
    state = _state_bytes(model, step)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        step()
        torch.cuda.synchronize(dev)
        return (torch.cuda.max_memory_allocated(dev) - before + state) / 2**20, "peak allocated (cuda)"
    if mode == "train":
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            step()
        grads = _tensor_bytes(p for p in model.parameters() if p.requires_grad)
        return (state + grads + sum(saved.values())) / 2**20, "estimate: weights, optimizer, grads, saved activations"
    largest = [0]

    def hook(_m: nn.Module, inputs: Any, output: Any) -> None:
        outs = output if isinstance(output, tuple | list) else (output,)
        largest[0] = max(largest[0], _tensor_bytes(inputs) + _tensor_bytes(outs))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    return (state + largest[0]) / 2**20, "estimate: weights + largest layer input and output"


def build_spec(spec: dict[str, Any], image_size: int) -> nn.Module | None:
    """The network a bench spec names ({"net": NetConfig fields} or {"timm": name, ...}); None when a timm model
    cannot be built at that size."""
    if "timm" in spec:
        from .table import timm_model

        return timm_model(spec["timm"], spec["num_classes"], spec["in_chans"], image_size, spec.get("scale"))
    from ablate.config.net import NetConfig
    from ablate.nn.net import build

    fields = {k: v for k, v in spec["net"].items() if v is not None or k != "patch_size"}  # canonical() nulls it
    return build(NetConfig.model_validate(fields))
