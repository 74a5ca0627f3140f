"""Iso-cost variants (`match:`): solved widths land on the target, rounded as the network needs, cached."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import STUDIES

from ablate.config.errors import StudyError
from ablate.config.load import load_study
from ablate.config.net import make_divisible
from ablate.config.presets import preset
from ablate.measure import isocost
from ablate.measure.table import count_study

SMALL = {"preset": "convnext_tiny", "depths": [1, 1, 2, 1]}


def write(tmp_path: Path, body: dict) -> Path:
    study = {"name": "iso", "data": {"dataset": "synthetic", "image_size": 32}, "measure": {"flops_image_size": 64},
             "model": SMALL, **body}
    path = tmp_path / "iso.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_every_variant_lands_within_tolerance_and_widths_are_rounded(tmp_path: Path) -> None:
    path = write(tmp_path, {"match": {"gflops": 0.2, "tolerance": 0.02, "divisor": 8},
                            "variants": [{"name": "base"}, {"name": "k3", "set": {"kernel_size": 3}},
                                         {"name": "wide", "set": {"expansion": 6}},
                                         {"name": "deep", "set": {"depths": [1, 1, 4, 1]}}]})
    loaded = load_study(path)
    rows = count_study(loaded)
    for v, row in zip(loaded.variants, rows, strict=True):
        assert abs(row["gflops"] / 0.2 - 1) <= 0.02, (v.name, row["gflops"])
        assert v.match["achieved"] == pytest.approx(row["gflops"], abs=1e-4)
        assert row["width_mult"] == v.match["multiplier"] and row["match"] == "gflops 0.2"
        assert all(d % 8 == 0 for d in v.net.dims)
    # a costlier change pays for itself in width
    mults = {v.name: v.match["multiplier"] for v in loaded.variants}
    assert mults["wide"] < mults["base"] and mults["deep"] < mults["base"] < mults["k3"]


def test_widths_are_rounded_to_what_groups_and_expansion_need() -> None:
    resnext = preset("resnext50_32x4d")  # expansion 0.5, groups 32 on the hidden width: widths of 64
    assert isocost.width_divisor(resnext, 8) == 64
    assert isocost.width_divisor(preset("convnext_tiny"), 8) == 8
    assert isocost.width_divisor(preset("resnet50", expansion=0.25, groups=4), 8) == 16
    scaled = isocost.scaled_widths(resnext, 1.1, 64)
    assert all(d % 64 == 0 and (d // 2) % 32 == 0 for d in scaled.dims)
    assert scaled.stem_width % 64 == 0


def test_a_grouped_network_matches_with_its_coarser_rounding(tmp_path: Path) -> None:
    path = write(tmp_path, {"model": {"preset": "resnext50_32x4d", "depths": [1, 1, 1, 1]},
                            "match": {"params": 6.0e6, "tolerance": 0.1}})
    v = load_study(path).variants[0]
    assert all(d % 64 == 0 for d in v.net.dims)
    assert abs(v.match["achieved"] / 6.0e6 - 1) <= 0.1


def test_an_unreachable_target_names_the_variant(tmp_path: Path) -> None:
    path = write(tmp_path, {"steps": [{"name": "base"},
                                      {"name": "tiny budget", "set": {"kernel_size": 3}, "match": {"gflops": 1e-4}}]})
    with pytest.raises(StudyError) as e:
        load_study(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: steps[1].match: variant 'tiny budget' cannot be matched to 0.0001 GFLOPs")
    assert "minimum" in msg and "\n" not in msg
    path = write(tmp_path, {"match": {"gflops": 1e4}})
    with pytest.raises(StudyError, match=r"match: variant .* needs every width x8 or more"):
        load_study(path)


def test_match_solves_at_the_paper_scale_and_scale_applies_after(tmp_path: Path) -> None:
    plain = load_study(write(tmp_path, {"match": {"gflops": 0.2}})).variants[0]
    path = write(tmp_path, {"match": {"gflops": 0.2}, "scale": {"width": 0.5, "depth": 0.5, "divisor": 8}})
    v = load_study(path).variants[0]
    assert v.net.dims == plain.net.dims  # the proxy trains the matched network, scaled: not a re-solve
    assert v.train_net.dims == tuple(make_divisible(d * 0.5, 8) for d in v.net.dims)
    assert v.train_net.depths == (1, 1, 1, 1)
    assert v.id != plain.id


def test_reference_targets_the_first_variant_and_params(tmp_path: Path) -> None:
    path = write(tmp_path, {"match": {"params": "reference", "tolerance": 0.03},
                            "variants": [{"name": "base"}, {"name": "k11", "set": {"kernel_size": 11}},
                                         {"name": "ex2", "set": {"expansion": 2}}]})
    loaded = load_study(path)
    base = loaded.variants[0]
    assert base.match["multiplier"] == 1.0 and base.net.dims == (96, 192, 384, 768)
    rows = count_study(loaded)
    for row in rows:
        assert abs(row["params"] / rows[0]["params"] - 1) <= 0.03


def test_the_solve_is_cached(tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"match": {"gflops": 0.15}, "grid": {"kernel_size": [3, 5]}})
    first = load_study(path)

    def no_solve(job: isocost.Job) -> isocost.Solution:
        raise AssertionError("solved again")

    monkeypatch.setattr(isocost, "solve", no_solve)
    again = load_study(path)
    assert [v.id for v in again.variants] == [v.id for v in first.variants]
    assert [v.match for v in again.variants] == [v.match for v in first.variants]


def test_timm_variants_cannot_be_matched(tmp_path: Path) -> None:
    path = write(tmp_path, {"match": {"gflops": 0.2}, "model": {"timm": "resnet18"}})
    with pytest.raises(StudyError, match=r"match: variant 'resnet18' is timm model"):
        load_study(path)
    with pytest.raises(StudyError, match=r"match: give exactly one target"):
        load_study(write(tmp_path, {"match": {"gflops": 0.2, "params": 1e6}}))


@pytest.mark.slow
def test_the_isoflops_roadmap_is_within_2_percent_of_convnext_t() -> None:
    loaded = load_study(STUDIES / "roadmap-isoflops.yaml")
    rows = count_study(loaded)
    assert len(rows) == 16  # width 64 -> 96 is no step at equal cost (see the study file)
    for row in rows:
        assert abs(row["gflops"] / 4.47 - 1) <= 0.02, row["name"]
    assert loaded.variants[-1].id == load_study(STUDIES / "roadmap.yaml").variants[-1].id  # ConvNeXt-T as is


def test_a_width_only_change_collapses_at_equal_cost(tmp_path: Path) -> None:
    path = write(tmp_path, {"match": {"gflops": 0.2},
                            "variants": [{"name": "base"}, {"name": "wider", "set": {"dims": [192, 384, 768, 1536]}}]})
    with pytest.raises(StudyError, match=r"'wider' and 'base' resolve to the same network.*at equal cost a change "
                       r"of widths alone is no change"):
        load_study(path)
