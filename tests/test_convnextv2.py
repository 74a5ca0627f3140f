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
from ablate.nn.net import Net, build
from ablate.nn.timm_map import from_timm, to_timm

# Variant ids at main 728a6d7, before `recipe.micro_batch` existed and before roadmap.yaml set batch_size 4096,
# micro_batch 128 and stem_norm: kernel-size.yaml (unchanged since), and the steps of roadmap-quick.yaml whose
# networks those changes left alone (1-3 and 17: micro_batch is not in an id, the proxy sets its own batch).
KERNEL_IDS = ["cd6cd78638", "fde2ebfca0", "170ff2db49", "61ef41f666", "2e73477df7"]
QUICK_IDS = {0: "a8345b6fad", 1: "a353a9044d", 2: "5110a8355c", 16: "efef5546d6"}


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
def test_isotropic_convnext_counts_match_the_paper(name: str) -> None:
    ref = preset_reference(name)
    net = build(preset(name), init=False)
    assert len(net.stages) == 1 and isinstance(net.stages[0].downsample, torch.nn.Identity)
    assert isinstance(net.stem.norm, torch.nn.Identity)  # the official stem is one 16x16 conv
    counts = count_module(net, 224, 3)
    assert counts.params == ref["params"]
    assert abs(counts.flops / 1e9 - ref["gflops"]) < 0.05
    assert round(counts.params / 1e6) == {"convnext_isotropic_small": 22, "convnext_isotropic_base": 87}[name]


@pytest.mark.parametrize(("name", "params", "layer_scale"), [
    ("convnext_isotropic_small", 22_308_712, False), ("convnext_isotropic_base", 87_083_752, False),
    ("convnext_isotropic_large", 305_942_504, True)])  # the official code's counts (L with layer scale)
def test_isotropic_params_equal_the_official_code(name: str, params: int, layer_scale: bool) -> None:
    with torch.device("meta"):  # 306 M parameters: counted without allocating them
        net = Net(preset(name))
    assert sum(p.numel() for p in net.parameters()) == params == preset_reference(name)["params"]
    assert hasattr(net.stages[0].blocks[0].layer_scale, "gamma") == layer_scale


def test_isotropic_convnext_trains_one_step() -> None:
    cfg = preset("convnext_isotropic_small", depths=(2,), dims=(32,), num_classes=10)
    net = build(cfg).train()
    out = net(torch.randn(4, 3, 32, 32))
    out.logsumexp(1).mean().backward()
    assert out.shape == (4, 10) and net.stem.conv.weight.grad is not None


def test_new_fields_keep_every_existing_id() -> None:
    assert [v.id for v in load_study(STUDIES / "kernel-size.yaml").variants] == KERNEL_IDS
    quick = load_study(STUDIES / "roadmap-quick.yaml").variants
    assert {i: quick[i].id for i in QUICK_IDS} == QUICK_IDS
    assert quick[0].recipe.micro_batch == 128 and quick[0].recipe.batch_size == 128  # one pass, as before
    ident = NetConfig().identity()
    assert "grn" not in ident and "stem_norm" not in ident
    assert "grn" in NetConfig(grn=True).identity() and "stem_norm" in NetConfig(stem_norm=False).identity()
