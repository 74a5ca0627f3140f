"""The second roadmap: ResNet-200 -> ConvNeXt-B against the paper's Table 11, ending exactly at timm's convnext_base."""

from __future__ import annotations

import pytest
from conftest import STUDIES

from ablate.config.load import load_study
from ablate.config.presets import preset
from ablate.measure.table import count_study
from ablate.reference import table

TABLE_11 = table("convnext_roadmap_r200")


def test_the_study_carries_table_11() -> None:
    loaded = load_study(STUDIES / "roadmap-r200.yaml")
    assert len(loaded.variants) == len(TABLE_11["steps"]) == 17
    for v, row in zip(loaded.variants, TABLE_11["steps"], strict=True):
        assert (v.reference.gflops, v.reference.top1) == (row["gflops"], row["top1"]), v.name
        assert v.group == row["group"]
    last = loaded.variants[-1].net.canonical()
    base = preset("convnext_base").canonical()
    assert {k: v for k, v in last.items() if k != "drop_path"} == {k: v for k, v in base.items() if k != "drop_path"}


@pytest.mark.slow
def test_every_step_within_0_1_gflops_of_table_11() -> None:
    rows = count_study(load_study(STUDIES / "roadmap-r200.yaml"))
    for row, ref in zip(rows, TABLE_11["steps"], strict=True):
        assert abs(row["gflops"] - ref["gflops"]) <= 0.1, row["name"]  # fvcore, norms included
        assert abs(row["gmacs_conv_linear"] - ref["gflops"]) <= 0.01, row["name"]  # conv + linear: Table 11's count
    assert rows[-1]["params"] == 88_591_464  # timm's convnext_base


@pytest.mark.slow
def test_the_last_step_computes_timm_convnext_base() -> None:
    import timm
    import torch

    from ablate.nn.net import build
    from ablate.nn.timm_map import from_timm

    cfg = load_study(STUDIES / "roadmap-r200.yaml").variants[-1].net
    torch.manual_seed(0)
    theirs = timm.create_model("convnext_base", pretrained=False).eval()
    ours = build(cfg, init=False).eval()
    ours.load_state_dict(from_timm(theirs.state_dict(), cfg), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-4


def test_stem_norm_and_drop_path_follow_the_paper() -> None:
    steps = load_study(STUDIES / "roadmap-r200.yaml").variants
    assert [v.net.stem_norm for v in steps] == [True] * 3 + [False] * 13 + [True]
    assert steps[3].changes == {"stem": ("resnet", "patchify"), "patch_size": (None, 4), "stem_norm": (True, False)}
    assert steps[-1].changes == {"stem_norm": (False, True), "downsample": ("block", "separate")}
    assert [v.net.drop_path for v in steps] == [0.0] + [0.5] * 16  # ConvNeXt-B's rate from the modern recipe on
    assert all(v.recipe.batch_size == 4096 and v.recipe.micro_batch == 128 for v in steps)
