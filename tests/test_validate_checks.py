"""`ablate validate` checks what a run would refuse later (the data's presence and size) and warns about what
would train other than it seems (a kernel past its feature maps, an EMA longer than the run, a warmup as long
as the run); `scale:` applies to timm ResNets and ConvNeXts, and is a one-line error for other timm models."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_integrity import SYNTH, TINY, cli, error_lines, fake_fmnist, fmnist, write_study  # noqa: F401

from ablate.config.load import load_study


def test_missing_data_and_a_subset_larger_than_the_data_fail_validate(cli, tmp_path: Path) -> None:  # noqa: F811
    path = write_study(tmp_path, data=fmnist(tmp_path / "nowhere"))
    code, _, err = cli("validate", str(path))
    assert code == 2 and len(error_lines(err)) == 1 and "data.root" in err and "is not a folder" in err, err
    assert cli("validate", str(path), "--no-data")[0] == 0  # a study checked here, run elsewhere

    root = fake_fmnist(tmp_path / "fm", 0)  # 60 training images
    path = write_study(tmp_path, data=fmnist(root)[:-1] + ", train_subset: 3000000}")
    code, _, err = cli("validate", str(path))
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0] == f"{path}: data.train_subset: fashion-mnist: train_subset 3000000 > 60 training images"
    assert not (tmp_path / "results").exists()


def test_a_kernel_past_its_feature_maps_is_a_warning_naming_the_stage(cli, tmp_path: Path) -> None:  # noqa: F811
    # patch 2 at 16 px: stage maps 8 and 4; kernel 9 reaches past the 4x4 map of stage 2 (its central 7x7 do)
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace("variants:\n  - {name: a}\n", "grid: {kernel_size: [3, 7, 9]}\n"))
    code, out, err = cli("validate", str(path))
    assert code == 0 and "ok" in out, err
    warnings = error_lines(err)
    assert len(warnings) == 1, err  # kernel 3 and 7 reach no padding-only tap
    assert warnings[0].startswith(f"{path}: grid.kernel_size: warning: kernel_size 9 is larger than the feature "
                                  "maps at 16 px (stage maps 8/4)")
    assert "in stage 2 (4x4) its central 7x7" in warnings[0] and "'kernel_size=9'" in warnings[0]


def test_an_ema_longer_than_the_run_and_a_warmup_as_long_as_it_are_warnings(cli, tmp_path: Path) -> None:  # noqa: F811
    path = write_study(tmp_path)  # 64 images, batch 32, 1 epoch: 2 updates
    code, _, err = cli("validate", str(path), "--set", "recipe.ema=0.9999", "--set", "recipe.warmup_epochs=1")
    assert code == 0, err
    warnings = error_lines(err)
    assert any(w.startswith(f"{path}: recipe.ema: warning: decay 0.9999 averages over ~10,000 updates, but the run "
                            "makes 2 ") for w in warnings), err
    assert any(w.startswith(f"{path}: recipe.warmup_epochs: warning: 1 >= epochs 1") for w in warnings), err
    code, _, err = cli("validate", str(path), "--set", "recipe.ema=0.5")
    assert code == 0 and "recipe.ema" not in err


SCALED = """name: t
model: {{timm: {name}}}
data: {{dataset: synthetic, image_size: 32}}
scale: {{width: 0.25, depth: 0.5}}
measure: {{flops_image_size: 32}}
"""


def test_scale_applies_to_timm_resnets_and_convnexts(tmp_path: Path) -> None:
    from ablate.nn.timm_scale import create, scaled_kwargs

    scale = {"width": 0.25, "depth": 0.5, "divisor": 8}
    assert scaled_kwargs("resnet18", scale) == {"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128),
                                                "stem_width": 16}
    assert scaled_kwargs("convnext_atto", scale) == {"depths": (1, 1, 3, 1), "dims": (16, 24, 40, 80)}
    full = sum(p.numel() for p in create("resnet18", None, 10, 3).parameters())
    quarter = sum(p.numel() for p in create("resnet18", scale, 10, 3).parameters())
    assert full > 11e6 and quarter < 0.4e6  # what a quarter-width, half-depth ResNet-18 has

    path = tmp_path / "t.yaml"
    path.write_text(SCALED.format(name="resnet18"))
    (v,) = load_study(path).variants
    assert v.timm_scale == scale
    path.write_text(SCALED.format(name="resnet18").replace("scale: {width: 0.25, depth: 0.5}", ""))
    (unscaled,) = load_study(path).variants
    assert unscaled.timm_scale is None and unscaled.id != v.id


def test_scale_on_a_timm_model_without_stage_widths_is_one_line(cli, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "t.yaml"
    path.write_text(SCALED.format(name="vit_tiny_patch16_224"))
    code, _, err = cli("validate", str(path))
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"{path}: scale: timm model 'vit_tiny_patch16_224' cannot be scaled"), lines[0]
    path.write_text(SCALED.format(name="resnet18") + "variants:\n  - {name: r}\n  - {name: vit, model: {timm: "
                    "vit_tiny_patch16_224}}\nexclude: [vit]\n")
    assert [v.name for v in load_study(path).variants] == ["r"]  # left out: not scaled, not refused


@pytest.mark.parametrize("name", ["resnet18"])
def test_flops_counts_the_scaled_timm_model(cli, tmp_path: Path, name: str) -> None:  # noqa: F811
    import io

    import pandas as pd

    path = tmp_path / "t.yaml"
    path.write_text(SCALED.format(name=name))
    code, out, err = cli("flops", str(path), "--format", "csv")
    assert code == 0, err
    row = pd.read_csv(io.StringIO(out)).iloc[0]
    assert row["params"] > 11e6  # at the paper's scale: the model as timm names it
    assert 0 < row["gflops_train"] < 0.01  # as trained: a quarter of the widths, half of the blocks
