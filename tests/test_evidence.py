"""Evidence rules of the study files: one change per roadmap step (computed from the resolved configs),
schedules that keep their shape when a recipe is shortened, and variant ids that survive schema growth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from conftest import STUDIES

from ablate.config import load as L
from ablate.config.load import load_study
from ablate.config.net import NetConfig, without_defaults
from ablate.config.recipes import RECIPES
from ablate.config.study import Recipe
from ablate.config.variant import changes_text

# What each roadmap step's name (and note) accounts for: no other resolved field may change.
RECIPE_FIELDS = {f"recipe.{k}" for k in Recipe.model_fields}
ALLOWED = {
    "ResNet-50 (classic recipe)": set(),
    # Table 5 of the paper, which the roadmap used from here on (minus EMA): the recipe, stochastic depth,
    # layer scale and truncated-normal init (the step's note lists them)
    "ResNet-50 (modern recipe)": RECIPE_FIELDS | {"drop_path", "layer_scale", "init"},
    "stage ratio": {"depths"},
    "patchify stem": {"stem", "patch_size", "stem_norm"},  # the paper's new stem is the conv alone (Section 2.2)
    "depthwise conv": {"groups"},
    "width 64 -> 96": {"dims", "stem_width"},
    "inverting dimensions": {"dims", "expansion"},
    "move up depthwise conv": {"spatial_conv"},
    "kernel size 5": {"kernel_size"},
    "kernel size 7": {"kernel_size"},
    "kernel size 9": {"kernel_size"},
    "kernel size 11": {"kernel_size"},
    "ReLU -> GELU": {"activation", "kernel_size"},  # note: back to kernel 7, as the paper keeps it
    "fewer activations": {"activations"},
    "fewer norms": {"norms"},
    "BN -> LN": {"norm"},
    # Section 2.6 adds the norm after the stem with the downsampling layers
    "separate downsampling (ConvNeXt-T)": {"downsample", "stem_norm"},
}


@pytest.mark.parametrize("study", ["roadmap.yaml", "roadmap-quick.yaml"])
def test_every_roadmap_step_changes_only_what_its_name_says(study: str) -> None:
    s = load_study(STUDIES / study)
    assert [v.name for v in s.variants] == list(ALLOWED)
    for v in s.variants:
        changed = set(v.changes or {})
        assert changed <= ALLOWED[v.name], (v.name, changed - ALLOWED[v.name])
        assert changed or v.index == 0, f"{v.name} changes nothing"
    by_name = {v.name: v.changes for v in s.variants}
    assert by_name["fewer norms"] == {"norms": ("all", "one")}  # the shortcut's norm and zero-init stay
    assert by_name["separate downsampling (ConvNeXt-T)"] == {"downsample": ("block", "separate"),
                                                           "stem_norm": (False, True)}
    assert by_name["stage ratio"] == {"depths": ([3, 4, 6, 3], [3, 3, 9, 3])}
    assert changes_text(by_name["ResNet-50 (modern recipe)"]).startswith("recipe classic→modern (+")


def test_changes_of_variants_are_against_the_first(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("name: v\nmodel: {preset: resnet26}\ndata: {dataset: synthetic}\nvariants:\n"
                    " - {name: a}\n - {name: b, set: {kernel_size: 5}}\n - {name: c, set: {recipe.epochs: 7}}\n")
    a, b, c = load_study(path).variants
    assert a.changes == {} and b.changes == {"kernel_size": (3, 5)}
    assert c.changes == {"recipe.epochs": (300, 7), "recipe.warmup_epochs": (20.0, round(20 * 7 / 300, 4))}


def test_step_milestones_are_a_change_only_under_the_step_schedule(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nmodel: {preset: resnet26}\ndata: {dataset: synthetic}\nrecipe: {epochs: 9}\nsteps:\n"
                    " - {name: classic, set: {recipe.preset: classic}}\n"
                    " - {name: modern, set: {recipe.preset: modern}}\n"
                    " - {name: cosine milestones, set: {recipe.decay_milestones: [2, 4]}}\n"
                    " - {name: step, set: {recipe.sched: step}}\n"
                    " - {name: step milestones, set: {recipe.decay_milestones: [3]}}\n")
    classic, modern, cosine_ms, step, step_ms = load_study(path).variants
    assert "recipe.sched" in modern.changes and "recipe.decay_milestones" not in modern.changes
    assert cosine_ms.changes == {}  # milestones do nothing under cosine
    assert set(step.changes) == {"recipe.sched"}
    assert step_ms.changes == {"recipe.decay_milestones": ([2, 4], [3])}


@pytest.mark.slow
def test_flops_json_has_a_changes_entry_per_step(empty_cache: Path) -> None:
    from typer.testing import CliRunner

    from ablate.cli import app

    r = CliRunner().invoke(app, ["flops", str(STUDIES / "roadmap.yaml"), "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows[0]["changes"] == {} and rows[4]["changes"] == {"groups": [1, "depthwise"]}
    assert all(set(row["changes"]) <= ALLOWED[row["name"]] for row in rows)


def test_schedule_scales_with_the_run() -> None:
    classic = Recipe(preset="classic", epochs=9)
    assert classic.decay_milestones == (3.0, 6.0, 8.0)  # 30/60/80 of 90 -> same fractions of 9
    assert Recipe(preset="classic").decay_milestones == (30, 60, 80)  # full length: the preset as published
    modern = Recipe(preset="modern", epochs=30)
    assert modern.warmup_epochs == 2.0 and Recipe(preset="modern").warmup_epochs == 20
    # a value the study gives itself is used as given
    assert Recipe(preset="classic", epochs=9, decay_milestones=(5,)).decay_milestones == (5,)
    assert Recipe(preset="modern", epochs=4, warmup_epochs=1).warmup_epochs == 1
    assert RECIPES["classic"]["decay_milestones"] == (30, 60, 80) and RECIPES["modern"]["warmup_epochs"] == 20


def test_shortened_step_schedule_decays_in_the_run() -> None:
    """timm's multistep scheduler, fed the scaled milestones, really decays inside a 4-epoch run."""
    import torch
    from timm.scheduler import create_scheduler_v2

    r = Recipe(preset="classic", epochs=4, base_batch=128, batch_size=128)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=r.learning_rate)
    sched, _ = create_scheduler_v2(opt, sched="multistep", num_epochs=r.epochs, warmup_epochs=r.warmup_epochs,
                                   decay_milestones=list(r.decay_milestones), decay_rate=0.1, step_on_epochs=False,
                                   updates_per_epoch=10)
    lrs = []
    for step in range(40):
        sched.step_update(num_updates=step)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(1e-4)
    assert lrs[12] == pytest.approx(0.1) and lrs[14] == pytest.approx(0.01)  # 1.333 epochs x 10 steps


def test_quick_roadmap_runs_enough_seeds_and_scaled_schedules() -> None:
    s = load_study(STUDIES / "roadmap-quick.yaml")
    assert len(s.study.seeds) >= 2
    classic, modern = s.variants[0].recipe, s.variants[1].recipe
    e = classic.epochs
    assert classic.decay_milestones == tuple(round(m * e / 90, 4) for m in (30, 60, 80))
    assert max(classic.decay_milestones) < e  # the lr decays inside the run
    assert modern.warmup_epochs == round(20 * modern.epochs / 300, 4)


def test_adding_a_neutral_field_keeps_every_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """A field added with a default that reproduces the old network leaves ids (and so finished trials) alone:
    fields at their default do not enter the hash."""
    from pydantic import create_model

    before = [(v.name, v.id) for v in load_study(STUDIES / "roadmap.yaml").variants]
    grown = create_model("GrownNetConfig", __base__=NetConfig, grn=(bool, False), isotropic=(bool, False))
    monkeypatch.setattr(L, "NetConfig", grown)
    monkeypatch.setattr(L, "NET_FIELDS", tuple(grown.model_fields))
    after = load_study(STUDIES / "roadmap.yaml")
    assert "grn" in after.variants[0].net.model_dump()  # the grown schema was really used
    assert [(v.name, v.id) for v in after.variants] == before
    # a non-default value does change the id
    tmp = yaml.safe_load((STUDIES / "roadmap.yaml").read_text())
    assert tmp["steps"][2]["set"] == {"depths": [3, 3, 9, 3]}
    net = after.variants[2].net
    changed = net.model_copy(update={"grn": True})
    assert without_defaults(changed.canonical(), grown) != without_defaults(net.canonical(), grown)
    digest = hashlib.sha256(json.dumps(net.identity(), sort_keys=True).encode()).hexdigest()
    assert digest == hashlib.sha256(json.dumps(load_study(STUDIES / "roadmap.yaml").variants[2].net.identity(),
                                               sort_keys=True).encode()).hexdigest()
