"""The toggles after ConvNeXt: ConvNeXt V2's GRN (against timm's convnextv2_*) and the isotropic ConvNeXt."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import STUDIES
from timm.layers.grn import GlobalResponseNorm

from ablate.config.load import load_study
from ablate.config.net import NetConfig
from ablate.config.presets import preset, preset_reference
from ablate.measure.counts import count_module
from ablate.nn.net import build
from ablate.nn.timm_map import from_timm, to_timm

# Variant ids of studies/roadmap.yaml at commit 46fc62b, before `grn` and `stem_norm` existed.
ROADMAP_IDS = ["9b57450576", "faf972907a", "5a5639ec35", "c9242b0de8", "fb92e8b77a", "de1b67aed3", "cc666fce4b",
               "dbe8630dc1", "780c2763ee", "95e546dd92", "c718c62037", "34b8f13e3c", "14dcdacb8e", "a508fca91d",
               "53a7368da2", "61c5bd5946", "b9f12c7e57"]


@pytest.mark.parametrize("name", ["convnextv2_tiny", "convnextv2_atto"])  # linear MLP / 1x1-conv MLP in timm
def test_grn_outputs_equal_timm_through_the_weight_mapping(name: str) -> None:
    torch.manual_seed(0)
    short = {"depths": (1, 1, 2, 1)}  # the block layouts of the preset, fewer of them: a fast test
    theirs = timm.create_model(name, pretrained=False, **short).eval()
    with torch.no_grad():  # GRN starts as the identity (zero weight and bias): give it weights that matter
        for m in theirs.modules():
            if isinstance(m, GlobalResponseNorm):
                m.weight.normal_(0, 0.5)
                m.bias.normal_(0, 0.5)
    cfg = preset(name, **short)
    ours = build(cfg).eval()
    ours.load_state_dict(from_timm(theirs.state_dict(), cfg), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-4
        off = build(cfg.model_copy(update={"grn": False})).eval()
        state = {k: v for k, v in ours.state_dict().items() if ".grn." not in k}
        off.load_state_dict(state, strict=True)
        assert (off(x) - ours(x)).abs().max().item() > 1e-3  # the GRN weights above really act
    back = to_timm(ours.state_dict(), cfg, theirs.state_dict())
    again = timm.create_model(name, pretrained=False, **short).eval()
    again.load_state_dict(back, strict=True)
    with torch.no_grad():
        assert (again(x) - ours(x)).abs().max().item() <= 1e-4


def test_grn_sits_before_the_last_conv_in_both_block_layouts() -> None:
    v2 = build(preset("convnextv2_tiny"), init=False)
    block = v2.stages[0].blocks[0]
    assert isinstance(block.grn, GlobalResponseNorm) and block.grn.weight.shape == (384,)
    assert not hasattr(block.layer_scale, "gamma")  # V2 drops layer scale
    res = build(preset("resnet50", grn=True), init=False)
    assert res.stages[0].blocks[0].grn.weight.shape == (64,)  # bottleneck: the k x k conv's output
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert res.eval()(x).shape == (1, 1000)


@pytest.mark.parametrize("name", ["convnext_isotropic_small", "convnext_isotropic_base"])
def test_isotropic_convnext_matches_the_paper(name: str) -> None:
    ref = preset_reference(name)
    net = build(preset(name), init=False)
    assert len(net.stages) == 1 and isinstance(net.stages[0].downsample, torch.nn.Identity)
    assert isinstance(net.stem.norm, torch.nn.Identity)  # the official stem is one 16x16 conv
    counts = count_module(net, 224, 3)
    assert counts.params == ref["params"]
    assert abs(counts.flops / 1e9 - ref["gflops"]) < 0.05
    assert round(counts.params / 1e6) == {"convnext_isotropic_small": 22, "convnext_isotropic_base": 87}[name]


def test_isotropic_convnext_trains_one_step() -> None:
    cfg = preset("convnext_isotropic_small", depths=(2,), dims=(32,), num_classes=10)
    net = build(cfg).train()
    out = net(torch.randn(4, 3, 32, 32))
    out.logsumexp(1).mean().backward()
    assert out.shape == (4, 10) and net.stem.conv.weight.grad is not None


def test_new_fields_keep_every_existing_id() -> None:
    assert [v.id for v in load_study(STUDIES / "roadmap.yaml").variants] == ROADMAP_IDS
    ident = NetConfig().identity()
    assert "grn" not in ident and "stem_norm" not in ident
    assert "grn" in NetConfig(grn=True).identity() and "stem_norm" in NetConfig(stem_norm=False).identity()
