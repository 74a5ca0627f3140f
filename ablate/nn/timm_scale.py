"""timm models as a study trains them: `scale:` applied to a timm ResNet or ConvNeXt (its per-stage depths and
widths scaled as ablate scales its own networks, config/load.py `_scaled`, and passed to its constructor), with
the data's classes and channels and the options the model takes (`create`).

Which timm families take such arguments is `ablate.config.timm_names.SCALABLE` (checked when the study loads);
their default depths and widths are read from the model built on the meta device (no memory, no init).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn as nn

from ablate.config.depth import rounded
from ablate.config.net import make_divisible
from ablate.config.timm_names import timm_family


def scaled_kwargs(name: str, scale: dict[str, Any] | None) -> dict[str, Any]:
    """Constructor arguments that scale timm model `name` ({} for no scale): `{"width", "depth", "divisor"}`."""
    if not scale:
        return {}
    family = timm_family(name)
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    width, depth, divisor = scale["width"], scale["depth"], scale["divisor"]

    def widths(values: list[int]) -> tuple[int, ...]:
        return tuple(make_divisible(c * width, divisor) if width != 1.0 else c for c in values)

    def depths(values: list[int]) -> tuple[int, ...]:
        return tuple(rounded(d, depth) if depth != 1.0 else d for d in values)

    if family == "resnet":
        stages = [getattr(model, f"layer{i}") for i in range(1, 5)]
        expansion = type(stages[0][0]).expansion
        out: dict[str, Any] = {"layers": depths([len(s) for s in stages]),
                               "channels": widths([fi["num_chs"] // expansion for fi in model.feature_info[1:]])}
        if isinstance(model.conv1, nn.Conv2d):  # a plain stem (a deep stem keeps its widths)
            out["stem_width"] = widths([model.conv1.out_channels])[0]
        return out
    if family == "convnext":
        return {"depths": depths([len(s.blocks) for s in model.stages]),
                "dims": widths([fi["num_chs"] for fi in model.feature_info])}
    raise ValueError(f"timm model '{name}' cannot be scaled")  # load_study refuses it first


def create(name: str, scale: dict[str, Any] | None, num_classes: int, in_chans: int, **optional: Any) -> nn.Module:
    """timm model `name` as trained: scaled, with the data's classes and channels, and each of `optional`
    (`img_size`, `drop_path_rate`; None = left out) that its constructor takes (not every timm model does)."""
    kwargs: dict[str, Any] = dict(num_classes=num_classes, in_chans=in_chans, **scaled_kwargs(name, scale))
    optional = {k: v for k, v in optional.items() if v is not None}
    while True:
        try:
            return timm.create_model(name, pretrained=False, **kwargs, **optional)
        except TypeError as e:
            refused = [k for k in optional if k in str(e)]
            if not refused:
                raise
            for k in refused:
                optional.pop(k)
