"""Training-step speed of ablate's builder against timm, for the presets that mirror a timm model.

One full step = forward, cross-entropy, backward, optimizer step, zero_grad. Both networks of a
pair live in the same process and are timed interleaved (A, B, A, B, ...), so a noisy, shared
machine slows both alike. The ratio is the median of the per-repetition (paired) ratios, which
drifting background load distorts far less than a ratio of separate medians.

    python bench/train_step.py                        # resnet50 and convnext_tiny, 64 px, batch 32
    python bench/train_step.py --models convnext_tiny --reps 20 --threads 2 --optimizer adamw
    python bench/train_step.py --device cuda --size 224 --batch 128 --amp bf16 --optimizer adamw   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config.presets import preset
from ablate.nn.net import build

MODELS = ("resnet50", "convnext_tiny")


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: str, lr: float,
              amp: str = "none") -> Callable[[], None]:
    model.train()
    opt: torch.optim.Optimizer
    # foreach=True pins the same (multi-tensor) implementation for both networks
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4, foreach=True)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, foreach=True)
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    if amp == "bf16":
        autocast = lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)  # noqa: E731

    def step() -> None:
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) * 1e3


def bench_pair(name: str, args: argparse.Namespace) -> tuple[float, float, list[float]]:
    """Median ms/step of ablate and timm, and the per-repetition ratios."""
    import timm

    torch.manual_seed(0)
    dev = torch.device(args.device)
    ours = build(preset(name)).to(dev)
    theirs = timm.create_model(name, pretrained=False).to(dev)
    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
    assert n_ours == n_theirs, f"{name}: {n_ours} != {n_theirs} parameters"

    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    if dev.type == "cuda":  # channels-last on both sides, as the engine trains on CUDA
        ours, theirs = (m.to(memory_format=torch.channels_last) for m in (ours, theirs))
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=dev)
    steps = {"ablate": make_step(ours, x, y, args.optimizer, args.lr, args.amp),
             "timm": make_step(theirs, x, y, args.optimizer, args.lr, args.amp)}
    for _ in range(args.warmup):  # allocator, oneDNN primitive caches and optimizer state settle
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(args.reps):
        # alternate which network goes first, so neither always follows the other's cache footprint
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for k in order:
            times[k].append(timed(steps[k], dev))
    ratios = [a / b for a, b in zip(times["ablate"], times["timm"], strict=True)]
    return statistics.median(times["ablate"]), statistics.median(times["timm"]), ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--reps", type=int, default=10, help="timed steps per network (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per network first")
    p.add_argument("--size", type=int, default=64, help="input height = width (px)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast dtype (as the engine on CUDA)")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="timm")  # model-creation chatter is not the benchmark's business
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else \
        f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, amp {args.amp}, "
          f"batch {args.batch} x 3 x {args.size} x {args.size}, {args.optimizer}, "
          f"{args.warmup} warmup + {args.reps} interleaved reps, median")
    header = f"{'model':<16}{'ablate ms/step':>16}{'timm ms/step':>14}{'ablate/timm':>13}{'ratio IQR':>16}"
    print(header)
    print("-" * len(header))
    for name in args.models:
        ours, theirs, ratios = bench_pair(name, args)
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        print(f"{name:<16}{ours:>16.1f}{theirs:>14.1f}{q[1]:>13.3f}{f'{q[0]:.3f}-{q[2]:.3f}':>16}", flush=True)


if __name__ == "__main__":
    main()
