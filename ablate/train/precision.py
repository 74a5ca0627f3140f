"""The precision a trial trains in (`recipe.precision`): autocast around the forward passes, weights in fp32."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def train_autocast(dev: torch.device, precision: str) -> Any:
    """The context a trial's forward passes run in. `auto`: bf16 autocast on CUDA (what ablate always did
    there), fp32 elsewhere; `bf16`: bf16 autocast on any device (on a CPU fast only with AMX or AVX512-BF16
    units); `fp32`: no autocast."""
    if precision == "fp32" or (precision == "auto" and dev.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16)
