"""Each NetConfig toggle changes what it should in the built network, and nothing else."""

from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath, LayerNorm2d
from torch import nn

from ablate.config.net import NetConfig
from ablate.nn.net import build

BASE = NetConfig(depths=(2, 2, 1), dims=(32, 64, 128), stem_width=16, expansion=0.25, num_classes=10)


def with_(cfg: NetConfig, update: dict) -> NetConfig:
    """cfg with some fields changed, validated like a study file's config."""
    return NetConfig.model_validate({**cfg.model_dump(), **update})


def layout(cfg: NetConfig) -> dict[str, tuple[str, tuple[int, ...] | None, int | None, tuple[int, ...] | None]]:
    """name -> (layer type, weight shape, groups, stride) for every leaf module that is not Identity."""
    out = {}
    for name, m in build(cfg, init=False).named_modules():
        if list(m.children()) or isinstance(m, nn.Identity):
            continue
        w = getattr(m, "weight", None)
        out[name] = (type(m).__name__, tuple(w.shape) if w is not None else None,
                     getattr(m, "groups", None), getattr(m, "stride", None))
    return out


def diff(a: NetConfig, b: NetConfig) -> tuple[dict, dict, dict]:
    la, lb = layout(a), layout(b)
    removed = {k: v for k, v in la.items() if k not in lb}
    added = {k: v for k, v in lb.items() if k not in la}
    changed = {k: (la[k], lb[k]) for k in la.keys() & lb.keys() if la[k] != lb[k]}
    return removed, added, changed


def blocks(net: nn.Module) -> list[nn.Module]:
    return [b for s in net.stages for b in s.blocks]


def forward_ok(cfg: NetConfig, size: int = 32) -> None:
    net = build(cfg)
    out = net(torch.randn(2, cfg.in_chans, size, size))
    assert out.shape == (2, cfg.num_classes)
    out.sum().backward()


def test_base_forward() -> None:
    forward_ok(BASE)


def test_norms_one_leaves_one_norm_per_block_after_the_spatial_conv() -> None:
    for spatial, norm_after in (("middle", "norm2"), ("first", "norm1")):
        base = with_(BASE, {"spatial_conv": spatial})
        one = with_(base, {"norms": "one"})
        net = build(one, init=False)
        for b in blocks(net):
            norms = [n for n in ("norm1", "norm2", "norm3") if not isinstance(getattr(b, n), nn.Identity)]
            assert norms == [norm_after]
            if isinstance(b.shortcut, nn.Sequential):  # the projection's norm is its own field: it stays
                assert isinstance(b.shortcut.norm, nn.BatchNorm2d)
        removed, added, changed = diff(base, one)
        assert removed and all(v[0] == "BatchNorm2d" for v in removed.values())
        assert not added
        # convs keep their shapes, groups and strides (they gain a bias where BN no longer follows)
        assert not changed
        forward_ok(one)


def test_shortcut_norm_is_its_own_field() -> None:
    net = build(with_(BASE, {"shortcut_norm": False}), init=False)
    projections = [b.shortcut for b in blocks(net) if isinstance(b.shortcut, nn.Sequential)]
    assert projections and all(not hasattr(p, "norm") and p.conv.bias is not None for p in projections)
    removed, added, _ = diff(BASE, with_(BASE, {"shortcut_norm": False}))
    assert set(removed) == {k for k in removed if ".shortcut.norm" in k} and removed and not added


@pytest.mark.parametrize("update, zeroed", [
    ({}, "norm3"),  # ResNet: the last norm of the branch starts at zero (timm's zero_init_last)
    ({"norms": "one"}, "conv3"),  # no last norm any more: the last conv starts at zero, the branch still does
    ({"zero_init_last": False}, None),
    ({"init": "convnext"}, None),  # timm's ConvNeXt has no zero-init ...
    ({"init": "convnext", "zero_init_last": True}, "norm3"),  # ... unless asked
])
def test_zero_init_last_starts_every_residual_branch_at_zero(update: dict, zeroed: str | None) -> None:
    torch.manual_seed(0)
    net = build(with_(BASE, update))
    for b in blocks(net):
        last = getattr(b, zeroed or "conv3")
        zero = bool((last.weight == 0).all()) and (last.bias is None or bool((last.bias == 0).all()))
        assert zero == (zeroed is not None), (update, zeroed)
    if zeroed:  # the residual branches add nothing at init: each block passes its shortcut through
        net.eval()
        b = blocks(net)[1]
        x = torch.randn(2, b.conv1.in_channels, 8, 8)
        with torch.no_grad():
            assert torch.equal(b(x), b.act3(b.shortcut(x)))


def test_spatial_conv_first_puts_the_kxk_conv_first() -> None:
    base = with_(BASE, {"groups": "depthwise", "expansion": 4.0, "kernel_size": 5})
    first = with_(base, {"spatial_conv": "first"})
    for b, w in zip(blocks(build(first, init=False)), [32, 32, 64, 64, 128], strict=True):
        assert b.conv1.kernel_size == (5, 5) and b.conv1.groups == b.conv1.in_channels
        assert b.conv2.kernel_size == (1, 1) and b.conv2.out_channels == 4 * w
        assert b.conv3.kernel_size == (1, 1) and b.conv3.out_channels == w
    for b in blocks(build(base, init=False)):
        assert b.conv1.kernel_size == (1, 1) and b.conv2.kernel_size == (5, 5)
    removed, added, changed = diff(base, first)
    assert not removed and not added
    assert all(".blocks." in k for k in changed)  # stem, downsampling and head untouched
    forward_ok(first)


def test_downsample_separate_adds_2x2_stride2_layers_and_their_norms() -> None:
    base = with_(BASE, {"stem_width": None})
    sep = with_(base, {"downsample": "separate"})
    net = build(sep, init=False)
    for i, stage in enumerate(net.stages):
        if i == 0:
            assert isinstance(stage.downsample, nn.Identity)
            continue
        norm, conv = stage.downsample
        assert isinstance(norm, nn.BatchNorm2d) and norm.num_features == sep.dims[i - 1]
        assert conv.kernel_size == (2, 2) and conv.stride == (2, 2) and conv.out_channels == sep.dims[i]
    assert all(b.conv2.stride == (1, 1) for b in blocks(net))  # no stride inside blocks any more
    assert isinstance(net.head.norm, nn.BatchNorm2d)  # a norm before the classifier
    removed, added, changed = diff(base, sep)
    assert set(added) == {"stages.1.downsample.0", "stages.1.downsample.1", "stages.2.downsample.0",
                          "stages.2.downsample.1", "head.norm"}
    # the strided blocks lose their projection shortcut (shapes no longer change inside a block)
    assert set(removed) == {"stages.1.blocks.0.shortcut.conv", "stages.1.blocks.0.shortcut.norm",
                            "stages.2.blocks.0.shortcut.conv", "stages.2.blocks.0.shortcut.norm"}
    assert set(changed) == {"stages.1.blocks.0.conv1", "stages.1.blocks.0.conv2", "stages.2.blocks.0.conv1",
                            "stages.2.blocks.0.conv2"}  # input width / stride of the first block only
    forward_ok(sep)


def test_activations_one_keeps_a_single_activation_between_the_1x1_convs() -> None:
    for spatial, act_after in (("middle", "act1"), ("first", "act2")):
        base = with_(BASE, {"spatial_conv": spatial})
        one = with_(base, {"activations": "one"})
        for b in blocks(build(one, init=False)):
            acts = [n for n in ("act1", "act2", "act3") if not isinstance(getattr(b, n), nn.Identity)]
            assert acts == [act_after]  # none after the residual add
        removed, added, changed = diff(base, one)
        assert removed and all(v[0] == "ReLU" for v in removed.values()) and not added and not changed


def test_groups_and_kernel_size_change_only_the_spatial_conv() -> None:
    for update in ({"groups": "depthwise"}, {"groups": 4}, {"kernel_size": 7}):
        other = with_(BASE, update)
        removed, added, changed = diff(BASE, other)
        assert not removed and not added
        assert changed and all(k.endswith(".conv2") for k in changed), update
        net = build(other, init=False)
        for b in blocks(net):
            if "groups" in update:
                g = b.conv2.in_channels if update["groups"] == "depthwise" else 4
                assert b.conv2.groups == g
            else:
                assert b.conv2.kernel_size == (7, 7) and b.conv2.padding == (3, 3)
        forward_ok(other)


def test_stem_patchify_replaces_conv_and_maxpool_with_one_strided_conv() -> None:
    patch = with_(BASE, {"stem": "patchify", "patch_size": 4})
    stem = build(patch, init=False).stem
    assert stem.conv.kernel_size == (4, 4) and stem.conv.stride == (4, 4) and not hasattr(stem, "pool")
    assert stem(torch.randn(1, 3, 32, 32)).shape == (1, 16, 8, 8)
    removed, added, changed = diff(BASE, patch)
    assert set(removed) == {"stem.pool", "stem.act"} and not added and set(changed) == {"stem.conv"}


def test_activation_and_norm_names_swap_the_layer_type_only() -> None:
    gelu = with_(BASE, {"activation": "gelu"})
    removed, added, changed = diff(BASE, gelu)
    assert not removed and not added and changed
    assert all(a[0] == "ReLU" and b[0] == "GELU" for a, b in changed.values())
    ln = with_(BASE, {"norm": "layer"})
    net = build(ln, init=False)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d | LayerNorm2d)]
    assert norms and all(isinstance(m, LayerNorm2d) for m in norms)
    # without BatchNorm after them, convs carry a bias again
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert all(m.bias is None for m in build(BASE, init=False).stages.modules() if isinstance(m, nn.Conv2d))
    forward_ok(ln)


def test_layer_scale_adds_one_gamma_per_block_channel() -> None:
    ls = with_(BASE, {"layer_scale": 1e-6})
    a, b = build(BASE), build(ls)
    extra = sum(p.numel() for p in b.parameters()) - sum(p.numel() for p in a.parameters())
    assert extra == sum(d * n for d, n in zip(BASE.dims, BASE.depths, strict=True))
    assert all(float(blk.layer_scale.gamma.detach().max()) == pytest.approx(1e-6) for blk in blocks(b))
    removed, added, changed = diff(BASE, ls)
    assert not removed and not changed and all(".layer_scale" in k for k in added)


def test_drop_path_grows_linearly_and_is_off_in_eval() -> None:
    dp = with_(BASE, {"drop_path": 0.2})
    net = build(dp)
    rates = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else 0.0 for b in blocks(net)]
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    plain = build(BASE)
    plain.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    net.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))  # stochastic depth changes training only
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters())


def test_width_depth_and_expansion_fields() -> None:
    cfg = with_(BASE, {"depths": (1, 3, 2), "dims": (24, 48, 96), "expansion": 0.5, "stem_width": 8})
    net = build(cfg, init=False)
    assert [len(s.blocks) for s in net.stages] == [1, 3, 2]
    assert net.stem.conv.out_channels == 8
    assert [s.blocks[0].conv1.out_channels for s in net.stages] == [12, 24, 48]
    assert net.head.fc.in_features == 96
    forward_ok(cfg)


@pytest.mark.parametrize("update, field", [
    ({"kernel_size": 4}, "kernel_size"),
    ({"groups": 3}, "groups"),
    ({"dims": (32, 64)}, "dims"),
    ({"expansion": 0.3}, "expansion"),
    ({"norm": "batchnorm"}, "norm"),
    ({"activation": "gleu"}, "activation"),
])
def test_impossible_combinations_name_the_field(update: dict, field: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        NetConfig.model_validate({**BASE.model_dump(), **update})
    assert field in str(err.value)


def test_every_roadmap_toggle_mix_builds_and_trains() -> None:
    # a few mixes of toggles the roadmap never visits, e.g. ConvNeXt blocks with a ResNet stem
    mixes = [
        {"stem": "resnet", "spatial_conv": "first", "groups": "depthwise", "expansion": 4.0, "dims": (16, 32, 64)},
        {"norm": "group", "norms": "one", "activations": "one", "downsample": "separate"},
        {"norm": "rms", "activation": "silu", "layer_scale": 0.1, "drop_path": 0.1, "in_chans": 1},
    ]
    for update in mixes:
        forward_ok(with_(BASE, update))
