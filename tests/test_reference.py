"""The paper's tables in ablate/reference/ against the studies' `reference:` values and the presets."""

from __future__ import annotations

import pytest
from conftest import STUDIES

from ablate.config.load import load_study
from ablate.config.presets import preset_reference
from ablate.reference import TABLES, table


def test_every_table_is_read() -> None:
    assert {name: bool(table(name)) for name in TABLES} == dict.fromkeys(TABLES, True)
    with pytest.raises(KeyError, match="unknown reference table 'nope'"):
        table("nope")


@pytest.mark.parametrize(("study", "name", "keys"), [
    ("roadmap.yaml", "convnext_roadmap", ("top1", "top1_std", "gflops", "gflops_corrected")),
    ("roadmap-r200.yaml", "convnext_roadmap_r200", ("top1", "gflops")),
])
def test_roadmap_references_are_the_papers_tables(study: str, name: str, keys: tuple[str, ...]) -> None:
    variants, rows = load_study(STUDIES / study).variants, table(name)["steps"]
    assert len(variants) == len(rows) == 17
    for v, row in zip(variants, rows, strict=True):
        assert v.group == row["group"], v.name
        assert {k: getattr(v.reference, k) for k in keys} == {k: row.get(k) for k in keys}, v.name


def test_bn_to_ln_keeps_the_printed_value_and_the_correction_apart() -> None:
    row = table("convnext_roadmap")["steps"][15]
    assert row["name"] == "BN -> LN" and (row["gflops"], row["gflops_corrected"]) == (4.46, 4.15)
    assert abs(row["gmac_conv_linear"] - row["gflops_corrected"]) <= 0.005


def test_isotropic_study_is_table_2_with_the_official_recipe() -> None:
    models = table("convnext_isotropic")["models"]
    variants = load_study(STUDIES / "isotropic.yaml").variants
    assert len(variants) == len(models)
    for v, (name, row) in zip(variants, models.items(), strict=True):
        ref = v.reference
        assert (ref.top1, ref.gflops, ref.params) == (row["top1"], row["gflops"], row["params"]), v.name
        assert round(row["params"] / 1e6) == row["params_m"]
        assert preset_reference(name)["params"] == row["params"] and preset_reference(name)["top1"] == row["top1"]
        assert v.net.depths == (row["depth"],) and v.net.dims == (row["dim"],) and not v.net.stem_norm
        assert v.net.drop_path == row["drop_path"] and (v.net.layer_scale or 0) == row["layer_scale"]
        assert v.recipe.warmup_epochs == row["warmup_epochs"] and v.recipe.batch_size == 4096


def test_presets_carry_table_1() -> None:
    for name, row in table("training_recipe")["model_variants"].items():
        ref = preset_reference(name)
        assert (ref["gflops"], ref["top1"], round(ref["params"] / 1e5) / 10) == (row["gflops"], row["top1"],
                                                                                   row["params_m"]), name


def test_references_study_is_table_1() -> None:
    for v in load_study(STUDIES / "references.yaml").variants:
        if v.net is not None and v.name.startswith("ConvNeXt"):
            row = table("training_recipe")["model_variants"][{"T": "convnext_tiny", "S": "convnext_small",
                                                              "B": "convnext_base"}[v.name[-1]]]
            assert (v.reference.top1, v.reference.gflops) == (row["top1"], row["gflops"]), v.name


@pytest.mark.slow
def test_isotropic_counts_round_to_table_2() -> None:
    from ablate.measure.table import count_study, paper_view

    rows = [paper_view(r) for r in count_study(load_study(STUDIES / "isotropic.yaml"))]
    assert [r["params"] for r in rows] == [22_308_712, 87_083_752, 305_942_504]
    assert [r["vs_paper"] for r in rows] == [None] * 3  # conv + linear rounds to 4.3 / 16.9 / 59.7
