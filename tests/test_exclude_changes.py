"""`changes` of a step are computed against the step before it among those `exclude:` leaves."""

from __future__ import annotations

from pathlib import Path

from ablate.config.load import load_study

STUDY = """
name: steps
model: {preset: resnet26}
data: {dataset: synthetic, image_size: 32}
steps:
  - {name: base}
  - {name: kernel 5, set: {kernel_size: 5}}
  - {name: kernel 7, set: {kernel_size: 7}}
exclude: [kernel 5]
"""


def test_changes_skip_an_excluded_step(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    variants = load_study(path).variants
    assert [v.name for v in variants] == ["base", "kernel 7"]
    assert variants[1].changes == {"kernel_size": (3, 7)}  # not 5 -> 7: the run has no kernel-5 step
