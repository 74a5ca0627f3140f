"""Gradient accumulation: one optimizer update of a global batch made of several forward/backward passes.

`recipe.batch_size` is the global batch (the paper's 4096): data-parallel processes each take a share of it, and
each process goes through its share in passes of `recipe.micro_batch` images. The gradients add up to those of
the mean loss over the whole share, so the update equals that of one large batch, except for what depends on
the batch itself: BatchNorm normalizes over each pass's own images (and updates its running statistics once per
pass), as it does over each GPU's images in data-parallel training without synchronized BatchNorm.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn


def accumulate(model: nn.Module, criterion: Callable[[Tensor, Tensor], Tensor], x: Tensor, target: Tensor,
               micro: int, amp: Any = None, distributed: bool = False) -> Tensor:
    """Backward passes over `x` in parts of `micro` images, each loss weighted by its share of the images;
    returns the mean loss over `x` (detached). `distributed`: `model` is a DistributedDataParallel, whose
    gradients are all-reduced once, on the last pass (`no_sync` before)."""
    parts = list(zip(x.split(micro), target.split(micro), strict=True))
    if len(parts) == 1:  # the common case, unchanged: no weighting, no extra tensor
        return _pass(model, criterion, x, target, 1.0, amp)
    total = torch.zeros((), device=x.device)
    for i, (xi, ti) in enumerate(parts):
        last = i == len(parts) - 1
        with contextlib.nullcontext() if last or not distributed else model.no_sync():
            total = total + _pass(model, criterion, xi, ti, len(xi) / len(x), amp)
    return total


def _pass(model: nn.Module, criterion: Callable[[Tensor, Tensor], Tensor], x: Tensor, target: Tensor,
          weight: float, amp: Any) -> Tensor:
    with amp if amp is not None else contextlib.nullcontext():
        out = model(x)
        loss = criterion(out.float(), target)
    if weight != 1.0:
        loss = loss * weight
    loss.backward()
    return loss.detach()
