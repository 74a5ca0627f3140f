"""Weight mapping between `ablate` networks and timm's ResNet / ConvNeXt: one rename table per family.

timm's ConvNeXt runs its 1x1 convs as `nn.Linear` on channels-last tensors; ours are 1x1
`nn.Conv2d`, so those weights are reshaped (out, in) <-> (out, in, 1, 1) on the way.
"""

from __future__ import annotations

import re

import torch

from ablate.config.net import NetConfig

# (timm key pattern, ablate key template)
RENAMES: dict[str, list[tuple[str, str]]] = {
    "resnet": [
        (r"^conv1\.", "stem.conv."),
        (r"^bn1\.", "stem.norm."),
        (r"^layer(\d+)\.(\d+)\.downsample\.0\.", "stages.{0}.blocks.{1}.shortcut.conv."),
        (r"^layer(\d+)\.(\d+)\.downsample\.1\.", "stages.{0}.blocks.{1}.shortcut.norm."),
        (r"^layer(\d+)\.(\d+)\.conv(\d)\.", "stages.{0}.blocks.{1}.conv{2}."),
        (r"^layer(\d+)\.(\d+)\.bn(\d)\.", "stages.{0}.blocks.{1}.norm{2}."),
        (r"^fc\.", "head.fc."),
    ],
    "convnext": [
        (r"^stem\.0\.", "stem.conv."),
        (r"^stem\.1\.", "stem.norm."),
        (r"^stages\.(\d+)\.downsample\.(\d)\.", "stages.{0}.downsample.{1}."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.", "stages.{0}.blocks.{1}.conv1."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.norm\.", "stages.{0}.blocks.{1}.norm1."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.", "stages.{0}.blocks.{1}.conv2."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.", "stages.{0}.blocks.{1}.conv3."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.grn\.", "stages.{0}.blocks.{1}.grn."),  # ConvNeXt V2
        (r"^stages\.(\d+)\.blocks\.(\d+)\.gamma$", "stages.{0}.blocks.{1}.layer_scale.gamma"),
        (r"^head\.(norm|fc)\.", "head.{0}."),
    ],
}


def family(cfg: NetConfig) -> str:
    """Which timm family a config belongs to (only these two have a weight mapping)."""
    if cfg.stem == "resnet" and cfg.spatial_conv == "middle" and cfg.downsample == "block":
        return "resnet"
    if cfg.stem == "patchify" and cfg.spatial_conv == "first" and cfg.downsample == "separate":
        return "convnext"
    raise ValueError("only ResNet-style (resnet stem, middle, block) and ConvNeXt-style "
                     "(patchify, first, separate) networks map to timm")


def _rename(key: str, fam: str) -> str:
    for pattern, template in RENAMES[fam]:
        m = re.match(pattern, key)
        if m:
            groups = [str(int(g) - 1) if fam == "resnet" and i == 0 and pattern.startswith("^layer") else g
                      for i, g in enumerate(m.groups())]  # timm's layer1..4 are stages 0..3
            return template.format(*groups) + key[m.end():]
    return key  # e.g. BatchNorm's num_batches_tracked under an already-renamed prefix


def from_timm(timm_state: dict[str, torch.Tensor], cfg: NetConfig) -> dict[str, torch.Tensor]:
    """A timm state dict -> one that `ablate.nn.build(cfg).load_state_dict` accepts."""
    fam = family(cfg)
    out = {}
    for key, value in timm_state.items():
        new = _rename(key, fam)
        if fam == "convnext" and ".mlp.fc" in key and key.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[new] = value
    return out


def to_timm(
    state: dict[str, torch.Tensor], cfg: NetConfig, timm_state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """An ablate state dict -> timm's keys and shapes (`timm_state` gives the target layout)."""
    fam = family(cfg)
    out = {}
    for key, ref in timm_state.items():
        value = state[_rename(key, fam)]
        out[key] = value.reshape(ref.shape)
    return out
