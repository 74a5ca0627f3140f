"""`extends:` may replace the study kind; `vs:` names what a step's change is judged against (its `changes`, the
report's paired comparison and verdict); a grid typo names the field the user wrote. No training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_integrity import SYNTH, TINY, cli, error_lines  # noqa: F401 - `cli` is a fixture

from ablate.config.load import load_study
from ablate.report import analysis as A

STEPS = """steps:
  - {name: base}
  - {name: k5, set: {kernel_size: 5}}
  - {name: gelu, set: {activation: gelu, kernel_size: 3}, vs: base}
"""


def study(tmp_path: Path, body: str, name: str = "s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, data=SYNTH) + body)
    return path


def test_a_grid_extends_a_roadmap(tmp_path: Path) -> None:
    parent = study(tmp_path, STEPS, "parent")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\nname: child\ngrid: {kernel_size: [3, 5]}\n")
    loaded = load_study(child)
    assert loaded.kind == "grid" and [v.name for v in loaded.variants] == ["kernel_size=3", "kernel_size=5"]
    child.write_text("extends: parent.yaml\nname: child\nsteps: null\nvariants: [{name: only}]\n")
    assert load_study(child).kind == "variants"
    child.write_text("extends: parent.yaml\nname: child\nsteps: null\n")  # no list at all: the base model alone
    assert load_study(child).kind == "single"
    assert load_study(parent).kind == "steps"


def test_vs_sets_the_changes_and_the_verdicts_comparison(tmp_path: Path) -> None:
    loaded = load_study(study(tmp_path, STEPS))
    gelu = loaded.variants[2]
    assert gelu.vs == "base" and gelu.changes == {"activation": ("relu", "gelu")}  # not kernel 5 -> 3
    rows = []
    for v, shift in zip(loaded.variants, (0.0, 1.0, 0.0), strict=True):  # the GELU step changes nothing vs base
        for seed, noise in enumerate((0.1, -0.2, 0.15)):
            rows.append({"index": v.index, "name": v.name, "group": v.group, "id": v.id, "seed": seed,
                         "status": "done", "top1": 80.0 + shift + noise * (1 + v.index), "against": v.vs})
    t = A.variant_table(pd.DataFrame(rows), loaded.kind)
    assert list(t["vs"]) == ["", "base", "base"]
    noise = (0.1 - 0.2 + 0.15) / 3
    assert t.loc[2, "delta"] == pytest.approx(2 * noise)  # paired with base (vs k5 it would be -1 + noise)
    assert t.loc[2, "pairs"] == 3 and t.loc[2, "verdict"] != ""
    assert t.loc[1, "delta"] == pytest.approx(1.0 + noise)  # k5 is still judged against the previous step


@pytest.mark.parametrize(("vs", "words"), [("gelu", "this variant itself"), ("bsae", "did you mean 'base'")])
def test_a_bad_vs_is_one_line(cli, tmp_path: Path, vs: str, words: str) -> None:  # noqa: F811
    path = study(tmp_path, STEPS.replace("vs: base", f"vs: {vs}"))
    code, _, err = cli("validate", str(path))
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{path}: steps[2].vs: ") and words in err, err


def test_a_grid_typo_names_the_grid_key_with_a_suggestion(cli, tmp_path: Path) -> None:  # noqa: F811
    path = study(tmp_path, "grid: {kernel_sise: [3, 5]}\n")
    code, _, err = cli("validate", str(path))
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"{path}: grid.kernel_sise: unknown network field 'kernel_sise' (did you mean "
                               "'kernel_size'?)"), lines[0]


def test_compared_with_follows_vs_for_the_report_and_the_added_seeds() -> None:
    from ablate.config.variant import compared_with

    names, groups = ["a", "b", "ref", "c", "d"], ["", "", "reference", "", ""]
    assert compared_with(groups, "steps") == [None, 0, None, 1, 3]
    assert compared_with(groups, "steps", names, [None, None, None, "a", None]) == [None, 0, None, 0, 3]
    assert compared_with(groups, "variants", names, [None, "c", None, None, "b"]) == [None, 3, None, 0, 1]
