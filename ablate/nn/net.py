"""The builder: stem -> stages (downsampling + residual blocks) -> head, from one `NetConfig`.

Module paths mirror the structure (`stem`, `stages[i].downsample`, `stages[i].blocks[j]`,
`head`) so FLOP breakdowns and timm weight mapping are plain renames.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.layers import DropPath, LayerNorm2d, LayerScale2d, trunc_normal_
from timm.layers.grn import GlobalResponseNorm

from ablate.config.net import BLOCKS, STEMS, NetConfig
from ablate.config.registry import entry

from .kernels import PatchConv, PointwiseConv, SpatialConv
from .layers import LayerFn, layer_norm_nhwc


def conv(in_chs: int, out_chs: int, k: int, stride: int = 1, groups: int = 1, bias: bool = True) -> nn.Conv2d:
    if k == 1 and groups == 1:
        return PointwiseConv(in_chs, out_chs, 1, stride, bias=bias)
    if k > 1 and k != stride:
        return SpatialConv(in_chs, out_chs, k, stride, padding=(k - 1) // 2, groups=groups, bias=bias)
    if k > 1 and k == stride and groups == 1:  # patchify / 2x2 downsampling: non-overlapping patches
        return PatchConv(in_chs, out_chs, k, stride, bias=bias)
    # "same" padding for odd k; patchify / 2x2 downsampling convs (k == stride) need none
    return nn.Conv2d(in_chs, out_chs, k, stride, padding=(k - 1) // 2 if k != stride else 0,
                     groups=groups, bias=bias)


@dataclass(frozen=True)
class BlockSpec:
    """The block design every block of one network shares (as timm's byobnet hands down a `LayerFn`);
    a block's own widths, stride and drop-path rate are its constructor's arguments.

    `spatial_first` puts the k x k conv first (ConvNeXt) instead of in the middle (ResNet).
    `norms`/`acts` say which conv is followed by a norm / activation (acts[2]: after the add).
    `project_norm`: a norm after the projection shortcut's 1x1 conv. `grn`: ConvNeXt V2's GRN.
    """

    layers: LayerFn
    kernel_size: int
    groups: int | str
    spatial_first: bool
    norms: tuple[bool, bool, bool]
    acts: tuple[bool, bool, bool]
    layer_scale: float | None = None
    project_norm: bool = True
    grn: bool = False

    @classmethod
    def from_config(cls, cfg: NetConfig, layers: LayerFn) -> BlockSpec:
        first = cfg.spatial_conv == "first"
        one_norm = (first, not first, False)  # after the spatial conv
        one_act = (not first, first, False)  # after the 1x1 conv that sets the hidden width
        return cls(layers=layers, kernel_size=cfg.kernel_size, groups=cfg.groups, spatial_first=first,
                   norms=(True, True, True) if cfg.norms == "all" else one_norm,
                   acts=(True, True, True) if cfg.activations == "all" else one_act,
                   layer_scale=cfg.layer_scale, project_norm=cfg.shortcut_norm, grn=cfg.grn)


class Block(nn.Module):
    """Residual block: conv1 -> norm1 -> act1 -> conv2 -> norm2 -> act2 -> grn -> conv3 -> norm3
    -> layer scale -> drop path, + shortcut -> act3. Absent norms/acts (and grn) are Identity."""

    def __init__(self, in_chs: int, out_chs: int, hidden: int, stride: int, spec: BlockSpec,
                 drop_path: float = 0.0):
        super().__init__()
        layers, k_size = spec.layers, spec.kernel_size
        if spec.spatial_first:  # k x k on the input width, then 1x1 up to hidden, 1x1 down to out
            widths = [(in_chs, in_chs, k_size, stride), (in_chs, hidden, 1, 1), (hidden, out_chs, 1, 1)]
            spatial = 0
        else:  # 1x1 down to hidden, k x k, 1x1 up to out
            widths = [(in_chs, hidden, 1, 1), (hidden, hidden, k_size, stride), (hidden, out_chs, 1, 1)]
            spatial = 1
        for i, (cin, cout, k, s) in enumerate(widths, start=1):
            g = 1 if i - 1 != spatial else (cin if spec.groups == "depthwise" else spec.groups)
            has_norm = spec.norms[i - 1]
            self.add_module(f"conv{i}", conv(cin, cout, k, s, g, bias=not (has_norm and layers.norm_is_batch)))
            self.add_module(f"norm{i}", layers.norm(cout) if has_norm else nn.Identity())
            self.add_module(f"act{i}", layers.act() if spec.acts[i - 1] else nn.Identity())
        # A moved-up spatial conv leaves norm -> act -> 1x1 -> act -> 1x1 with only per-position
        # layers: with layer norms (or none) that whole run goes channels-last, as timm's ConvNeXt
        # block does (two permutes instead of two per norm; linear instead of 1x1-conv backward).
        self.nhwc = spec.spatial_first and all(isinstance(getattr(self, f"norm{i}"), LayerNorm2d | nn.Identity)
                                          for i in (1, 2, 3))
        if self.nhwc:
            self.conv2.nhwc = self.conv3.nhwc = True
        # ConvNeXt V2's GRN on the last conv's input (timm: `mlp.grn`, laid out as the tensor it sees)
        self.grn = GlobalResponseNorm(widths[2][0], eps=1e-6, channels_last=self.nhwc) if spec.grn else nn.Identity()
        self.layer_scale = LayerScale2d(out_chs, spec.layer_scale) if spec.layer_scale is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if stride != 1 or in_chs != out_chs:  # projection shortcut only where shapes change
            no_bias = spec.project_norm and layers.norm_is_batch
            shortcut = OrderedDict(conv=conv(in_chs, out_chs, 1, stride, bias=not no_bias))
            if spec.project_norm:
                shortcut["norm"] = layers.norm(out_chs)
            self.shortcut = nn.Sequential(shortcut)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        if self.nhwc:
            x = self.conv1(x).permute(0, 2, 3, 1)
            x = self.act1(layer_norm_nhwc(self.norm1, x))
            x = self.grn(self.act2(layer_norm_nhwc(self.norm2, self.conv2(x))))
            x = layer_norm_nhwc(self.norm3, self.conv3(x)).permute(0, 3, 1, 2)
        else:
            x = self.act1(self.norm1(self.conv1(x)))
            x = self.grn(self.act2(self.norm2(self.conv2(x))))
            x = self.norm3(self.conv3(x))
        x = self.drop_path(self.layer_scale(x))
        return self.act3(x + shortcut)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero (timm's ResNet `zero_init_last=True`): the last norm's weight,
        or, when the branch ends in a conv (`norms: one`), that conv's weight and bias."""
        if getattr(self.norm3, "weight", None) is not None:
            nn.init.zeros_(self.norm3.weight)
        else:
            nn.init.zeros_(self.conv3.weight)
            if self.conv3.bias is not None:
                nn.init.zeros_(self.conv3.bias)


class Stage(nn.Module):
    """Optional downsampling layer (norm -> 2x2 stride-2 conv), then `depth` blocks."""

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    """Global average pool -> norm (separate downsampling only) -> linear classifier."""

    def __init__(self, in_chs: int, num_classes: int, norm: nn.Module):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = norm
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.pool(x)).flatten(1))


def make_stem(cfg: NetConfig, layers: LayerFn) -> nn.Module:
    plugin = entry("stem", cfg.stem) if cfg.stem not in STEMS else None
    if plugin is not None:  # a plug-in's stem (config/registry.py): cfg.in_chans -> cfg.stem_out channels
        return plugin.build(cfg, layers)
    width, no_bias = cfg.stem_out, layers.norm_is_batch and cfg.stem_norm
    norm = layers.norm(width) if cfg.stem_norm else nn.Identity()
    if cfg.stem == "resnet":
        return nn.Sequential(OrderedDict(
            conv=conv(cfg.in_chans, width, 7, 2, bias=not no_bias), norm=norm, act=layers.act(),
            pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
    return nn.Sequential(OrderedDict(
        conv=conv(cfg.in_chans, width, cfg.patch_size, cfg.patch_size, bias=not no_bias), norm=norm))


class Net(nn.Module):
    """A ConvNet of the ResNet -> ConvNeXt design space, built from a `NetConfig`."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        layers = LayerFn.from_config(cfg)
        separate = cfg.downsample == "separate"
        spec = BlockSpec.from_config(cfg, layers)
        plugin = entry("block", cfg.block) if cfg.block not in BLOCKS else None
        block = plugin.build if plugin is not None else Block  # a plug-in's block takes Block's arguments
        total = sum(cfg.depths)  # stochastic depth grows linearly from 0 to drop_path, as in timm
        drop_rates = [cfg.drop_path * n / max(total - 1, 1) for n in range(total)]

        self.stem = make_stem(cfg, layers)
        stages, prev, n = [], cfg.stem_out, 0
        for i, (depth, dim) in enumerate(zip(cfg.depths, cfg.dims, strict=True)):
            downsample: nn.Module = nn.Identity()
            if separate and (i > 0 or prev != dim):
                k = 2 if i > 0 else 1  # stage 1 only needs a width change when stem_width != dims[0]
                downsample = nn.Sequential(layers.norm(prev), conv(prev, dim, k, k))
                prev = dim
            blocks = []
            for j in range(depth):
                stride = 2 if (not separate and i > 0 and j == 0) else 1
                blocks.append(block(prev, dim, cfg.hidden(i), stride, spec, drop_rates[n]))
                prev, n = dim, n + 1
            stages.append(Stage(downsample, blocks))
        self.stages = nn.Sequential(*stages)
        self.head = Head(prev, cfg.num_classes, layers.norm(prev) if separate else nn.Identity())
        # Channels-last (NHWC) memory: oneDNN's CPU convolutions (depthwise ones above all) are
        # faster on it, and it is the layout the channels-last block MLPs produce anyway. Shapes,
        # state-dict keys and values are unchanged; only the strides of the 4-d weights differ.
        self.to(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # a no-op when the input already is
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    @torch.no_grad()
    def init_weights(self) -> None:
        """The reference init of the family named by `cfg.init` (timm's ResNet / ConvNeXt)."""
        for m in self.modules():
            if self.cfg.init == "convnext" and isinstance(m, nn.Conv2d | nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif self.cfg.init == "resnet" and isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if self.cfg.zero_init:  # after the loop: a zeroed last conv must not be re-initialised by it
            for stage in self.stages:  # a plug-in's block takes part when it has the same method
                for m in stage.blocks:
                    if callable(getattr(m, "zero_init_last", None)):
                        m.zero_init_last()


def build(cfg: NetConfig, init: bool = True) -> Net:
    """Build the network. `init=False` leaves weights uninitialised (fast: for counting only)."""
    if not init:
        with torch.device("meta"):
            net = Net(cfg)
        net.to_empty(device="cpu")
        for t in [*net.parameters(), *net.buffers()]:  # no garbage (or denormals) in the counted forward
            t.detach().zero_()
        return net
    net = Net(cfg)
    net.init_weights()
    return net
