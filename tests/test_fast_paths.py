"""The engine's and builder's fast paths compute what the plain PyTorch ops compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ablate.nn.kernels import PatchConv, PointwiseConv, SpatialConv, _tiny_depthwise


@pytest.mark.parametrize(("chans", "size", "k", "stride", "bias"),
                         [(8, 2, 3, 1, True), (8, 2, 3, 2, False), (6, 4, 7, 2, True), (4, 3, 7, 1, True),
                          (5, 8, 9, 1, False), (4, 1, 7, 1, True)])
def test_tiny_depthwise_conv_matches_conv2d_forward_and_backward(chans: int, size: int, k: int, stride: int,
                                                                 bias: bool) -> None:
    torch.manual_seed(0)
    conv = SpatialConv(chans, chans, k, stride, padding=k // 2, groups=chans, bias=bias)
    x = torch.randn(3, chans, size, size).contiguous(memory_format=torch.channels_last)
    assert _tiny_depthwise(x, conv.weight, conv.groups) == (2 * size * size <= 3 * k * k)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = conv(xa)
    ref = F.conv2d(xb, conv.weight, conv.bias, stride, k // 2, 1, chans)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, [xa, *conv.parameters()], grad)
    want = torch.autograd.grad(ref, [xb, *conv.parameters()], grad)
    torch.testing.assert_close(out, ref)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("size", "k", "stride"), [(2, 3, 2), (1, 3, 1), (1, 3, 2), (3, 5, 2), (2, 7, 4), (3, 3, 1)])
def test_dense_conv_with_one_output_position_matches_conv2d(size: int, k: int, stride: int) -> None:
    torch.manual_seed(0)
    conv = SpatialConv(6, 5, k, stride, padding=k // 2, bias=True).to(memory_format=torch.channels_last)
    x = torch.randn(3, 6, size, size).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    got_out, want_out = conv(xa), F.conv2d(xb, conv.weight, conv.bias, stride, k // 2)
    assert got_out.shape == want_out.shape
    torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(want_out)
    got = torch.autograd.grad(got_out, [xa, *conv.parameters()], grad)
    want = torch.autograd.grad(want_out, [xb, *conv.parameters()], grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

@pytest.mark.parametrize(("chans", "out", "size", "k"), [(1, 8, 32, 4), (6, 12, 8, 2), (4, 8, 7, 2)])
def test_patch_conv_matches_conv2d_forward_and_backward(chans: int, out: int, size: int, k: int) -> None:
    torch.manual_seed(0)
    conv = PatchConv(chans, out, k, k)
    x = torch.randn(3, chans, size, size).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    got_out, want_out = conv(xa), F.conv2d(xb, conv.weight, conv.bias, k)
    torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-5)
    assert got_out.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(want_out)
    got = torch.autograd.grad(got_out, [xa, *conv.parameters()], grad)
    want = torch.autograd.grad(want_out, [xb, *conv.parameters()], grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("chans", "out", "size", "stride", "bias", "channels_last"),
                         [(16, 4, 8, 1, True, True), (4, 16, 4, 1, False, True), (8, 8, 1, 1, True, True),
                          (6, 3, 5, 1, True, False), (8, 16, 8, 2, False, True), (4, 8, 5, 2, True, True),
                          (4, 8, 2, 2, True, True), (4, 6, 7, 3, True, False)])
def test_pointwise_conv_matches_conv2d_forward_and_backward(chans: int, out: int, size: int, stride: int, bias: bool,
                                                           channels_last: bool) -> None:
    torch.manual_seed(0)
    conv = PointwiseConv(chans, out, 1, stride, bias=bias).to(memory_format=torch.channels_last)
    x = torch.randn(3, chans, size, size)
    if channels_last:  # the layout Net gives every activation: the linear path
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    got_out, want_out = conv(xa), F.conv2d(xb, conv.weight, conv.bias, stride)
    assert got_out.shape == want_out.shape
    torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-5)
    if channels_last:
        assert got_out.is_contiguous(memory_format=torch.channels_last)  # what BatchNorm after it expects
    grad = torch.randn_like(want_out)
    got = torch.autograd.grad(got_out, [xa, *conv.parameters()], grad)
    want = torch.autograd.grad(want_out, [xb, *conv.parameters()], grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batch_erasing_noise_is_standard_normal_on_erased_pixels_only() -> None:
    from ablate.train.augment import BatchErasing

    torch.manual_seed(0)
    x = torch.full((2000, 3, 16, 16), 7.0)
    out = BatchErasing(0.5)(x)
    erased = out != 7.0
    assert (erased.all(1) == erased.any(1)).all()  # every channel of an erased pixel
    noise = out[erased]
    assert abs(noise.mean().item()) < 0.02 and abs(noise.std().item() - 1) < 0.02


def test_decoded_idx_files_are_reused_until_they_change(tmp_path) -> None:  # noqa: ANN001
    import os

    from ablate.config.study import DataSpec, Recipe
    from ablate.train.data import load_data
    from tests.test_data import _fake_fmnist, _write_idx

    root = _fake_fmnist(tmp_path / "fm", gz=False)
    spec = DataSpec(dataset="fashion-mnist", root=str(root))
    first = load_data(spec, Recipe(preset="classic"), 0, "cpu").train.images
    assert load_data(spec, Recipe(preset="classic"), 1, "cpu").train.images is first  # no second decode
    labels = root / "train-labels-idx1-ubyte"
    _write_idx(labels, (np.arange(60) + 1) % 10)
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))
    again = load_data(spec, Recipe(preset="classic"), 0, "cpu")
    assert again.train.images is not first
    assert again.train.labels.tolist() == ((torch.arange(60) + 1) % 10).tolist()
