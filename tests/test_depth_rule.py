"""`scale.depth_rule`: the default rounding loses the stage-ratio step's change at the quick proxy's depth;
`keep_steps` keeps every step's change of depth, at every stage, in its direction."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.config.depth import keep_steps, rounded
from ablate.config.errors import StudyError
from ablate.config.load import load_study

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "studies" / "roadmap-quick.yaml"


def _direction(a: tuple[int, ...], b: tuple[int, ...]) -> list[int]:
    return [(y > x) - (y < x) for x, y in zip(a, b, strict=True)]


def test_keep_steps_map() -> None:
    maps = keep_steps([(3, 4, 6, 3), (3, 3, 9, 3)], 0.34)
    assert maps == [{3: 1}, {3: 1, 4: 2}, {6: 2, 9: 3}, {3: 1}]
    assert [rounded(d, 0.34) for d in (3, 4, 6, 9)] == [1, 1, 2, 3]  # the default: 3 and 4 both give 1
    assert keep_steps([(3, 24, 36, 3), (3, 3, 27, 3)], 0.1) == [{3: 1}, {3: 1, 24: 2}, {27: 3, 36: 4}, {3: 1}]
    assert keep_steps([(2, 2)], 1.0) == [{2: 2}, {2: 2}]


@pytest.mark.parametrize("rule", ["round", "keep_steps"])
def test_roadmap_steps_at_the_quick_proxys_scale(rule: str) -> None:
    """Every pair of consecutive steps of the quick proxy (depth 0.34): with `keep_steps` each stage whose
    paper-scale depth changes changes the same way in the trained network; with `round` the stage-ratio step
    keeps stage 2 at 1 block."""
    loaded = load_study(QUICK, [f"scale.depth_rule={rule}"])
    steps = [v for v in loaded.variants if v.net is not None and v.group != "reference"]
    assert loaded.study.scale.depth == 0.34
    lost = []
    for before, after in zip(steps, steps[1:], strict=False):
        paper = _direction(before.net.depths, after.net.depths)
        trained = _direction(before.train_net.depths, after.train_net.depths)
        if paper != trained:
            lost.append(after.name)
    ratio = next(v for v in steps if v.name == "stage ratio")
    prev = steps[steps.index(ratio) - 1]
    if rule == "keep_steps":
        assert lost == []
        assert (prev.train_net.depths, ratio.train_net.depths) == ((1, 2, 2, 1), (1, 1, 3, 1))
    else:
        assert lost == ["stage ratio"] and prev.train_net.depths == (1, 1, 2, 1)


def test_keep_steps_is_opt_in_and_not_for_a_search(tmp_path: Path) -> None:
    assert load_study(QUICK).study.scale.depth_rule == "round"
    default_ids = [v.id for v in load_study(QUICK).variants]
    kept = load_study(QUICK, ["scale.depth_rule=keep_steps"]).variants
    # only the steps whose trained depths change get new ids: the ResNet steps before the stage ratio
    changed = [v.name for v, old in zip(kept, default_ids, strict=True) if v.id != old]
    assert changed and all(v.train_net.depths == (1, 2, 2, 1) for v in kept if v.name in changed)
    bad = tmp_path / "s.yaml"
    bad.write_text("name: s\nscale: {depth: 0.5, depth_rule: keep_steps}\ndata: {dataset: synthetic}\n"
                   "search: {trials: 2, space: {kernel_size: [3, 5]}}\n")
    with pytest.raises(StudyError, match="depth_rule"):
        load_study(bad)
