"""Every preset has timm's parameter count; resnet50 and convnext_tiny compute timm's outputs."""

from __future__ import annotations

import pytest
import timm
import torch

from ablate.config.net import ACTIVATIONS, NORMS
from ablate.config.presets import PRESETS, preset, preset_reference
from ablate.nn.layers import NORM_LAYERS, act_layer
from ablate.nn.net import Net, build
from ablate.nn.timm_map import from_timm, to_timm


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in PRESETS if n in timm.list_models()])  # isotropic: test_convnextv2
def test_preset_params_equal_timm(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory or init time for the 350M-parameter models
        ours = n_params(Net(preset(name)))
        theirs = n_params(timm.create_model(name, pretrained=False))
    assert ours == theirs == preset_reference(name)["params"]


@pytest.mark.parametrize("name", ["resnet50", "convnext_tiny", "resnext50_32x4d"])
def test_weight_mapping_gives_timm_outputs(name: str) -> None:
    torch.manual_seed(0)
    theirs = timm.create_model(name, pretrained=False).eval()
    ours = build(preset(name), init=False).eval()  # every weight is loaded below: no init needed
    missing, unexpected = ours.load_state_dict(from_timm(theirs.state_dict(), preset(name)), strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    assert diff <= 1e-4
    # and back: our weights loaded into timm give the same outputs again
    back = to_timm(ours.state_dict(), preset(name), theirs.state_dict())
    with torch.device("meta"):  # every tensor comes from `back`
        again = timm.create_model(name, pretrained=False).eval()
    again.load_state_dict(back, strict=True, assign=True)
    with torch.no_grad():
        assert (again(x) - ours(x)).abs().max().item() <= 1e-4


def test_registries_match_the_config_names() -> None:
    # NetConfig validates names without importing torch; the builder's tables must agree with it
    assert tuple(NORM_LAYERS) == NORMS
    for name in ACTIVATIONS:
        layer = act_layer(name)()
        assert isinstance(layer, torch.nn.Module), name
    for name, make in NORM_LAYERS.items():
        out = make(32)(torch.randn(2, 32, 4, 4))
        assert out.shape == (2, 32, 4, 4), name


def test_init_follows_the_family() -> None:
    torch.manual_seed(0)
    res = build(preset("resnet50"))
    # timm's ResNet zeroes the last BN of every block: the residual branch starts as identity
    assert all(float(b.norm3.weight.detach().abs().sum()) == 0 for s in res.stages for b in s.blocks)
    cnx = build(preset("convnext_tiny"))
    w = cnx.stages[2].blocks[0].conv2.weight.detach()
    assert 0.015 < float(w.std()) < 0.025  # trunc_normal(std=0.02)
    assert float(cnx.stages[2].blocks[0].layer_scale.gamma.detach().max()) == pytest.approx(1e-6)
