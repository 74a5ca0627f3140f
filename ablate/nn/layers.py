"""Registries: the study-file name of a norm or activation -> a constructor (timm's layers).

Strings are resolved here, once, at the config -> builder boundary; blocks and stages only
ever receive callables (`LayerFn`). The CPU fast paths of the convolutions are in `kernels.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import GroupNorm, GroupNorm1, LayerNorm2d, RmsNorm2d, create_act_layer

from ablate.config.net import ACTIVATIONS, NetConfig, unknown_name
from ablate.config.registry import entry, names


def _group_norm(channels: int) -> nn.Module:
    # 32 groups as in Wu & He (2018); fewer when a (proxy-scaled) width is not a multiple of 32.
    return GroupNorm(channels, num_groups=math.gcd(32, channels))


NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "layer": partial(LayerNorm2d, eps=1e-6),  # ConvNeXt's epsilon
    "group": _group_norm,
    "group1": GroupNorm1,
    "rms": RmsNorm2d,
}


def layer_norm_nhwc(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`norm` (a `LayerNorm2d` or `Identity`) applied to a channels-last (N, H, W, C) tensor."""
    if isinstance(norm, LayerNorm2d):  # LayerNorm2d permutes to NHWC itself; here the input already is
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return x


def norm_layer(name: str) -> Callable[[int], nn.Module]:
    """A built-in norm, or one a plug-in registered (config/registry.py); a built-in name is ablate's own."""
    plugin = entry("norm", name)
    if plugin is not None and name not in NORM_LAYERS:
        return plugin.build
    if name not in NORM_LAYERS:
        raise ValueError(unknown_name(name, tuple(NORM_LAYERS) + names("norm"), "norm"))
    return NORM_LAYERS[name]


def act_layer(name: str) -> Callable[[], nn.Module]:
    """A built-in activation (timm's), or one a plug-in registered."""
    plugin = entry("activation", name)
    if plugin is not None and name not in ACTIVATIONS:
        return plugin.build
    if name not in ACTIVATIONS:
        raise ValueError(unknown_name(name, ACTIVATIONS + names("activation"), "activation"))
    # In-place where the layer supports it, as timm's ResNet does (saves an activation copy).
    return partial(create_act_layer, name, inplace=True)


@dataclass(frozen=True)
class LayerFn:
    """The resolved layers one network is built from, handed down as one bundle."""

    norm: Callable[[int], nn.Module]
    act: Callable[[], nn.Module]
    norm_is_batch: bool  # a conv followed by BatchNorm needs no bias: BN subtracts the per-channel mean

    @classmethod
    def from_config(cls, cfg: NetConfig) -> LayerFn:
        return cls(norm=norm_layer(cfg.norm), act=act_layer(cfg.activation), norm_is_batch=cfg.norm == "batch")
