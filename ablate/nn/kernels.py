"""CPU kernels of the network's convolutions: conv layers (`PointwiseConv`, `SpatialConv`, `PatchConv`) that keep
a conv's parameters, state-dict keys and hooks, but compute the same sums on a CPU by faster routes (linear
layers over channels or patches, cropped kernels, a batched-matmul depthwise weight gradient). Elsewhere, and
when traced for FLOP counting (the paper counts the full kernel), they are plain convs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

_PLAIN = [0]  # depth of `plain_convs` contexts


@contextlib.contextmanager
def plain_convs() -> Iterator[None]:
    """Within it, these convs compute as PyTorch's own (`nn.Conv2d.forward`, as when traced for FLOP counting):
    `ablate bench` measures a design's cost as PyTorch computes it, not as ablate's CPU kernels speed it up
    for trials. (A block's channels-last `nhwc` 1x1 convs stay linear layers, as in timm's ConvNeXt.)"""
    _PLAIN[0] += 1
    try:
        yield
    finally:
        _PLAIN[0] -= 1


def _plain() -> bool:
    return _PLAIN[0] > 0 or torch.jit.is_tracing()


class PointwiseConv(nn.Conv2d):
    """A 1x1 conv (any stride, no padding, no groups) computed as a linear layer over channels where that is
    faster.

    With `nhwc` set (by the block that owns it), the input is (N, H, W, C) and the conv is computed
    as `F.linear` with the same weight viewed as (out, in): on CPU that is several times faster in
    backward than a 1x1 conv (it is what timm's ConvNeXt does with `nn.Linear`). On CPU, an (N, C, H, W)
    input in channels-last memory (every activation of `Net`) takes the same path through two permutes
    that are views, not copies: the output is again an (N, C, H, W) tensor in channels-last memory, so
    BatchNorm and the rest of a ResNet-style block see what a conv would have given them. Measured on the
    quick proxy's batch-norm steps (1 thread, one training step): 1-26 % faster than oneDNN's 1x1 conv.
    The parameter stays a conv weight, so state-dict keys and shapes, FLOP counts (traced forwards take the
    conv; fvcore counts a linear as a 1x1 conv anyway) and forward hooks on `nn.Conv2d` are the same.
    A strided 1x1 conv (a ResNet projection shortcut) is the same linear layer on every stride-th position
    (a slice): 1.2-2.8x faster than oneDNN's in forward + backward on the proxy's shortcut shapes.
    """

    nhwc: bool = False  # set only on stride-1 convs (the channels-last run of a ConvNeXt-style block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            return F.linear(x, self.weight.flatten(1), self.bias)
        if (x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
                and not _plain()):
            sh, sw = self.stride
            if (sh, sw) != (1, 1):
                x = x[:, :, ::sh, ::sw]
            return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)
        return super().forward(x)


class SpatialConv(nn.Conv2d):
    """A k x k, "same"-padded conv (k != stride) that skips the kernel taps which only ever see padding
    (stride 1), whose depthwise weight gradient on tiny maps avoids oneDNN's slow path, and which runs as one
    linear layer when its output map is 1 x 1 (dense convs on CPU).

    On a feature map smaller than the kernel (ConvNeXt's 7x7 on the last stage of a small-image
    proxy: 2x2 at 64 px) the outer taps multiply zeros only. Cropping them is exact (their gradient
    is exactly zero either way) and spares oneDNN its slow large-kernel-on-tiny-map backward.
    FLOPs are still counted for the full kernel (the paper's convention): traced forwards skip it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _plain():
            return super().forward(x)
        (ph, pw), (h, w) = self.padding, x.shape[-2:]
        weight, padding = self.weight, (ph, pw)
        if self.stride == (1, 1):
            rh, rw = min(ph, h - 1), min(pw, w - 1)  # farthest tap offset that can reach the input
            if (rh, rw) != (ph, pw):
                weight, padding = self.weight[:, :, ph - rh:ph + rh + 1, pw - rw:pw + rw + 1], (rh, rw)
        if _tiny_depthwise(x, weight, self.groups):
            return _DepthwiseConv.apply(x, weight, self.bias, self.stride, padding)
        if self.groups == 1 and x.device.type == "cpu" and _one_output_position(x, weight, self.stride, padding):
            return _as_linear(x, weight, self.bias, padding)
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


def _one_output_position(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                         padding: tuple[int, int]) -> bool:
    """The conv's output map is 1 x 1 (a ResNet-style stage-4 conv of a 32 px proxy: 2x2 in, stride 2)."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = x.shape[-2:], weight.shape[-2:], stride, padding
    return (h + 2 * ph - kh) // sh == 0 and (w + 2 * pw - kw) // sw == 0


def _as_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               padding: tuple[int, int]) -> torch.Tensor:
    """A dense conv with a 1 x 1 output: one linear layer over the input patch its kernel reaches (the taps
    over padding only ever see zeros). oneDNN's backward of such a conv ran at ~3 G multiply-adds/s (one
    3x3 conv took 9.4 ms of a 78 ms ResNet proxy step); as a linear layer, forward + backward, 4.2x faster."""
    (ph, pw), (h, w) = padding, x.shape[-2:]
    weight = weight[:, :, ph:ph + h, pw:pw + w]  # the taps over input positions (clamped to the kernel)
    th, tw = weight.shape[-2:]
    return _patch_linear(x[:, :, :th, :tw], weight, bias)  # the one patch is the reached input


class PatchConv(nn.Conv2d):
    """A k x k, stride-k conv (patchify stem, separate downsampling layers), run on CPU as a linear
    layer over non-overlapping k x k patches (space-to-depth, then `F.linear`): the same sums, without
    oneDNN's slow backward of strided convs on small maps (3-4x faster on a 32 px proxy's maps).
    Parameters, state-dict keys and FLOP counts (traced forwards take the conv) are the conv's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _plain() or x.device.type != "cpu":
            return super().forward(x)
        return _patch_linear(x, self.weight, self.bias)


def _patch_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A conv whose stride is its kernel, without padding: `F.linear` over the non-overlapping kernel-sized
    patches (space-to-depth). The output is (N, C, H, W) in channels-last memory."""
    (kh, kw), (n, c, h, w) = weight.shape[-2:], x.shape
    ho, wo = h // kh, w // kw
    x = x[:, :, :ho * kh, :wo * kw]  # what a conv without padding reaches
    patches = (x.permute(0, 2, 3, 1).reshape(n, ho, kh, wo, kw, c).transpose(2, 3)
               .reshape(n, ho, wo, kh * kw * c))
    return F.linear(patches, weight.permute(0, 2, 3, 1).reshape(weight.shape[0], kh * kw * c), bias
                    ).permute(0, 3, 1, 2)


def _tiny_depthwise(x: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    """A CPU depthwise conv being trained on a map hardly larger than its kernel (h * w <= 1.5 k * k):
    there oneDNN computes the weight gradient up to 30x slower than a batched matmul
    (`_depthwise_weight_grad`): the inverted-bottleneck and large-kernel steps of a small-image proxy
    spent most of a step in it. On larger maps (a 3x3 on 8x8) oneDNN is the faster one."""
    return (x.device.type == "cpu" and groups > 1 and groups == x.shape[1] == weight.shape[0]
            and weight.requires_grad and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and x.dtype == weight.dtype == torch.float32
            and 2 * x.shape[-2] * x.shape[-1] <= 3 * weight.shape[-2] * weight.shape[-1])


class _DepthwiseConv(torch.autograd.Function):
    """conv2d (oneDNN) forward and input gradient; weight gradient by `_depthwise_weight_grad`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):  # noqa: ANN001, ANN205 - autograd's signature
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(grad, x, weight, None, list(ctx.stride), list(ctx.padding),
                                                     [1, 1], False, [0, 0], x.shape[1], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            gw = _depthwise_weight_grad(grad, x, weight.shape[-2:], ctx.stride, ctx.padding).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None, None


def _depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, kernel: tuple[int, int],
                           stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """dL/dw of a depthwise conv: per channel, the (out position x in position) products summed over the
    batch (one batched matmul), then summed into the k x k taps that link each pair (one matmul)."""
    n, c, h, w = x.shape
    ho, wo = grad.shape[-2:]
    # Both operands channel-major and contiguous. On channels-last tensors the reshapes alone would be views
    # with a batch stride of 1, and CPU bmm then copies every channel's matrix on its own (2-6x slower).
    g = grad.float().permute(1, 0, 2, 3).reshape(c, n, ho * wo).contiguous()
    xs = x.float().permute(1, 0, 2, 3).reshape(c, n, h * w).contiguous()
    pairs = torch.bmm(g.transpose(1, 2), xs).view(c, ho * wo * h * w)
    taps = _tap_matrix(h, w, ho, wo, tuple(kernel), tuple(stride), tuple(padding)).to(pairs.device)
    return (pairs @ taps).view(c, 1, *kernel)


@lru_cache(maxsize=64)
def _tap_matrix(h: int, w: int, ho: int, wo: int, kernel: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int]) -> torch.Tensor:
    """(ho*wo*h*w, kh*kw) 0/1 matrix: which kernel tap links output position (oy, ox) to input (iy, ix)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    taps = torch.zeros(ho, wo, h, w, kh, kw)
    for i in range(kh):
        for j in range(kw):
            for oy in range(ho):
                iy = oy * sh - ph + i
                for ox in range(wo):
                    ix = ox * sw - pw + j
                    if 0 <= iy < h and 0 <= ix < w:
                        taps[oy, ox, iy, ix, i, j] = 1.0
    return taps.view(ho * wo * h * w, kh * kw)
