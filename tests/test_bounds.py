"""Complexity-bounded search: configurations outside the cost window are counted, rejected, never trained."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import STUDIES, run_cli

from ablate.config.errors import StudyError
from ablate.config.load import load_study, search_variant
from ablate.measure.bounds import out_of_bounds
from ablate.sweep.ledger import Ledger
from ablate.sweep.options import LedgerOptions
from ablate.sweep.search import search_counts

# A planted space: at 16 px the tiny net below costs (MFLOPs) k1/e1 0.18, k3/e1 0.45, k5/e1 0.97, k7/e1 1.76,
# k1/e4 0.95, k3/e4 5.1, k5/e4 13.5, k7/e4 26.1: the window [0.9, 2.0] MFLOPs holds three of the eight.
INSIDE = {(5, 1.0), (7, 1.0), (1, 4.0)}
PLANTED = """
name: bounded
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16, train_subset: 128, val_subset: 128}
recipe: {preset: classic, epochs: 1, batch_size: 32, warmup_epochs: 0, lr: 0.05}
measure: {flops_image_size: 16}
search:
  sampler: random
  trials: 2
  seed: 0
  flops: [0.0009, 0.002]
  space:
    kernel_size: [1, 3, 5, 7]
    expansion: [1.0, 4.0]
"""


@pytest.mark.slow
def test_rejected_candidates_never_reach_training(tmp_path: Path) -> None:
    path = tmp_path / "bounded.yaml"
    path.write_text(PLANTED)
    results = tmp_path / "results"
    r = run_cli("run", str(path), "--results", str(results), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    loaded = load_study(path)
    trials = Ledger(loaded, LedgerOptions(None, results, readonly=True)).trials()
    done = [t for t in trials if t.state.name == "COMPLETE"]
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    assert len(done) == 2 and rejected  # the budget counts trained trials only
    assert all((t.params["kernel_size"], t.params["expansion"]) in INSIDE for t in done)
    assert all((t.params["kernel_size"], t.params["expansion"]) not in INSIDE for t in rejected)
    assert all(t.state.name == "PRUNED" and "trial_id" not in t.user_attrs for t in rejected)
    assert all(t.user_attrs["rejected"].startswith("gflops ") for t in rejected)
    trained = {p.name for p in (results / "bounded" / "trials").iterdir()}
    assert trained == {t.user_attrs["trial_id"] for t in done}  # nothing of a rejected one was written
    assert search_counts(trials) == {"accepted": 2, "rejected": len(rejected)}
    r = run_cli("report", str(path), "--results", str(results), "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "reports" / "bounded" / "report.md").read_text()
    assert f"2 sampled configuration(s) accepted and trained, {len(rejected)} rejected by a count" in text


def test_bounds_on_parameters_and_open_ends(tmp_path: Path) -> None:
    path = tmp_path / "bounded.yaml"
    path.write_text(PLANTED.replace("flops: [0.0009, 0.002]", "params: [null, 60000]"))
    loaded = load_study(path)
    small = search_variant(loaded, {"kernel_size": 3, "expansion": 1.0}, 0)  # 47,656 parameters
    big = search_variant(loaded, {"kernel_size": 3, "expansion": 4.0}, 1)  # 227,176
    assert out_of_bounds(loaded, small) is None
    assert out_of_bounds(loaded, big) == "params 0.2272M > 0.06M"


def test_bounds_are_checked_at_load(tmp_path: Path) -> None:
    path = tmp_path / "bounded.yaml"
    path.write_text(PLANTED.replace("[0.0009, 0.002]", "[0.002, 0.0009]"))
    with pytest.raises(StudyError, match=r"search\.flops: .*below low"):
        load_study(path)
    path.write_text(PLANTED.replace("sampler: random", "sampler: grid"))
    with pytest.raises(StudyError, match=r"search\.flops: cost bounds need a sampler"):
        load_study(path)


def test_the_bounded_example_loads_and_its_window_holds_convnext_t() -> None:
    loaded = load_study(STUDIES / "search-bounded.yaml")
    search = loaded.study.search
    assert search is not None and search.flops == (4.0, 5.0)
    t = search_variant(loaded, {"kernel_size": 7, "expansion": 4, "dims": [96, 192, 384, 768],
                                "depths": [3, 3, 9, 3]}, 0)
    assert out_of_bounds(loaded, t) is None  # ConvNeXt-T itself (4.47 GFLOPs) is inside
