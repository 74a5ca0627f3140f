"""An example plug-in: a GroupNorm variant (`ws_group`: GroupNorm over groups of 8 channels, with a learnable
per-channel gain on the normalized output only) and a small whole model (`tiny_mixer`, registered with timm).

A study names this file in `plugins:`; its variants may then say `norm: ws_group` or `model: {timm: tiny_mixer}`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.models import register_model

from ablate.config.registry import register_norm


class GroupNorm8(nn.GroupNorm):
    """GroupNorm with groups of 8 channels (as many groups as the width allows)."""

    def __init__(self, channels: int):
        super().__init__(num_groups=max(1, channels // math.gcd(8, channels)), num_channels=channels, eps=1e-5)


@register_norm("ws_group")
def ws_group(channels: int) -> nn.Module:
    return GroupNorm8(channels)


class TinyMixer(nn.Module):
    """patchify conv -> 2 depthwise-conv / pointwise blocks -> pool -> linear."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, width: int = 32, **_: object):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, width, 4, 4)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(width, width, 3, padding=1, groups=width),
                                                    nn.BatchNorm2d(width), nn.GELU(), nn.Conv2d(width, width, 1))
                                      for _ in range(2)])
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x.mean((2, 3)))


@register_model
def tiny_mixer(pretrained: bool = False, **kwargs: object) -> TinyMixer:
    return TinyMixer(**kwargs)
