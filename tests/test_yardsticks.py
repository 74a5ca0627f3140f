"""Agreement with the paper beside its yardsticks (GFLOPs, parameters, step index, the paper's cross-regime
ceiling), per readout, and the linear-model floor: pure functions on tiny tables, the paper's own tables, the
committed proxy results, and one report built from a synthetic ledger (no training of networks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import build, roadmap_study

from ablate.config.load import load_study
from ablate.reference import table as reference_table
from ablate.report import analysis as A
from ablate.report.floor import floor_lines, linear_floor
from ablate.report.readouts import available, scores, with_train_loss_sum
from ablate.report.yardsticks import CEILING, Steps, ceiling, yardsticks

ROOT = Path(__file__).resolve().parents[1]


def _paper_steps(gflops_key: str = "gflops") -> pd.DataFrame:
    steps = reference_table("convnext_roadmap")["steps"]
    return pd.DataFrame({"name": [s["name"] for s in steps], "ref_top1": [s["top1"] for s in steps],
                         "gflops": [s[gflops_key] for s in steps], "params": 1.0})


def _point(st: Steps, what: str, x: np.ndarray) -> float:
    return float(st.figure(what, x[None, :], np.arange(st.items(what))[None, :])[0])


def test_yardsticks_on_the_papers_own_table() -> None:
    """Table 10 read as a predictor of itself: the printed GFLOPs column agrees at rho 0.48 (levels) and 0.35
    (changes) with the paper's sign on 6 of its 8 big steps; the step index at 0.90; Table 11 (the paper's
    R200 regime) at 0.945, 0.77 and 8 of 8: the numbers issue 25 quotes."""
    st = Steps(_paper_steps(), "steps")
    assert len(st.big) == 8 and set(st.yardsticks) == {"gflops", "params", "step", CEILING}
    g = st.yardsticks["gflops"]
    assert _point(st, "levels", g) == pytest.approx(0.475, abs=0.005)
    assert _point(st, "changes", g) == pytest.approx(0.346, abs=0.005)
    assert _point(st, "signs", g) == 6
    assert _point(st, "levels", st.yardsticks["step"]) == pytest.approx(0.899, abs=0.005)
    c = st.yardsticks[CEILING]
    assert _point(st, "levels", c) == pytest.approx(0.945, abs=0.005)
    assert _point(st, "changes", c) == pytest.approx(0.766, abs=0.005)
    assert _point(st, "signs", c) == 8
    assert np.isnan(_point(st, "levels", st.yardsticks["params"]))  # a constant predictor ranks nothing


def test_ceiling_matches_either_regime_and_in_order_parts() -> None:
    r50 = np.array([s["top1"] for s in reference_table("convnext_roadmap")["steps"]])
    r200 = np.array([s["top1"] for s in reference_table("convnext_roadmap_r200")["steps"]])
    assert np.allclose(ceiling(r50)[0], r200) and np.allclose(ceiling(r200)[0], r50)
    assert np.allclose(ceiling(r50[[1, 2, 5, 9]])[0], r200[[1, 2, 5, 9]])  # a proxy that leaves steps out
    assert ceiling(np.array([70.0, 71.0, 72.0])) is None
    assert ceiling(r50[[2, 1, 5]]) is None  # out of order: not the same steps


def _results(top1: np.ndarray, seeds: int = 3, ref: list[float] | None = None) -> pd.DataFrame:
    """A results table: steps x seeds of top-1 (seed noise added), losses the mirror image of top-1."""
    rng = np.random.default_rng(0)
    ref = ref or [s["top1"] for s in reference_table("convnext_roadmap")["steps"]][: len(top1)]
    rows = []
    for i, (t, r) in enumerate(zip(top1, ref, strict=True)):
        for s in range(seeds):
            v = float(t + rng.normal(0, 0.05))
            rows.append({"index": i, "name": f"step {i}", "group": "g", "id": f"v{i}", "seed": s, "status": "done",
                         "top1": v, "top1_best": v + 0.1, "loss": 1 - v / 100, "train_loss_sum": 5 - v / 50,
                         "ema_top1": None, "epochs": 4, "ref_top1": r, "ref_top1_std": None,
                         "gflops": 4.0 + 0.1 * ((i * 7) % 5), "params": 2e7 + i, "ref_gflops": None})
    return pd.DataFrame(rows)


def test_a_proxy_that_reproduces_the_paper_beats_the_flops_column() -> None:
    """A proxy whose top-1 is the paper's own (plus tiny seed noise) agrees at rho ~1 on every readout, and its
    difference to the FLOPs yardstick has an interval above 0; readouts nobody trained (EMA) are left out."""
    ref = np.array([s["top1"] for s in reference_table("convnext_roadmap")["steps"]])
    df = _results(ref * 3 - 150)
    assert available(df) == ["top1", "top1_best", "loss", "train_loss_sum"]
    assert list(scores(df, "loss")[:2]) == pytest.approx(list(-df["loss"][:2]))
    table = A.variant_table(df)
    y = yardsticks(table, df, "steps").set_index("name")
    assert list(y.index) == ["top1", "top1_best", "loss", "train_loss_sum", "gflops", "params", "step", CEILING]
    top = y.loc["top1"]
    assert top["rho_levels"] > 0.99 and top["rho_changes"] > 0.95 and top["big_same"] == 8
    assert top["rho_levels_lo"] <= top["rho_levels"] <= top["rho_levels_hi"]
    assert top["gflops:changes_lo"] > 0 and top["gflops:levels_lo"] > 0
    assert top["gflops:changes"] == pytest.approx(top["rho_changes"] - y.loc["gflops", "rho_changes"])
    assert "step:changes" not in y.columns and np.isnan(y.loc["step", "rho_changes"])
    assert y.loc["loss", "rho_levels"] == pytest.approx(top["rho_levels"])  # loss mirrors top-1: same order
    assert y.loc[CEILING, "kind"] == CEILING and "R200" in y.loc[CEILING, "label"]


def test_a_proxy_that_inverts_the_paper_loses_to_it() -> None:
    ref = np.array([s["top1"] for s in reference_table("convnext_roadmap")["steps"]])
    df = _results(-ref)
    y = yardsticks(A.variant_table(df), df, "steps").set_index("name")
    assert y.loc["top1", "rho_levels"] < -0.99 and y.loc["top1", f"{CEILING}:levels_hi"] < 0


def test_verdicts_follow_the_readout() -> None:
    """`readout: loss` judges changes of the negated loss: a step whose loss falls is `helped`."""
    df = _results(np.array([70.0, 75.0, 80.0]))
    t = A.variant_table(df, readout="loss")
    assert list(t["verdict"][1:]) == ["helped", "helped"]
    assert t["delta"].iloc[1] == pytest.approx(0.05, abs=0.01)  # a loss change, not a top-1 change
    assert A.agreement(t, df, readout="loss")["readout"] == "loss"


def test_train_loss_sum_from_metrics_only_for_complete_curves() -> None:
    df = pd.DataFrame({"id": ["a", "b"], "seed": [0, 0], "status": "done", "epochs": [2, 2]})
    metrics = pd.DataFrame({"id": ["a", "a", "b"], "seed": 0, "epoch": [1, 2, 1], "train_loss": [2.0, 1.5, 2.0]})
    out = with_train_loss_sum(df, metrics)
    assert out["train_loss_sum"].iloc[0] == 3.5 and np.isnan(out["train_loss_sum"].iloc[1])


def test_committed_proxy_results_get_every_yardstick() -> None:
    """Real data: the committed 12,000-image rung (3 seeds, 17 steps of Table 10)."""
    df = pd.read_csv(ROOT / "results" / "proxy-images-12k" / "results.csv")
    y = yardsticks(A.variant_table(df), df, "steps").set_index("name")
    assert {"top1", "top1_best", "loss", "gflops", "params", "step", CEILING} <= set(y.index)
    assert "ema_top1" not in y.index and "train_loss_sum" not in y.index  # no EMA trained; no metrics.csv kept
    assert y.loc[CEILING, "rho_levels"] == pytest.approx(0.945, abs=0.005)
    for name in ("top1", "loss"):
        r = y.loc[name]
        for what in ("levels", "changes", "signs"):
            lo, hi = r[f"gflops:{what}_lo"], r[f"gflops:{what}_hi"]
            assert lo <= r[f"gflops:{what}"] <= hi


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, str]:
    """A 6-step roadmap with 2 seeds in a real ledger (no training), and its report."""
    tmp = tmp_path_factory.mktemp("yard")
    loaded = roadmap_study(tmp, n=6, seeds="[0, 1]")
    outcome = {(i, s): {"top1": 80.0 + [0, 3, 1, 2, -1, 4][i] + 0.1 * s} for i in range(6) for s in (0, 1)}
    _, md = build(loaded, tmp, outcome)
    return tmp, loaded, md


def test_report_shows_yardsticks_and_the_floor(reported: tuple[Path, object, str]) -> None:
    tmp, loaded, md = reported
    assert "## Agreement with the paper, per readout and beside its yardsticks" in md
    for words in ("final top-1 *", "Σ train loss (−)", "yardstick: GFLOPs", "yardstick: step index",
                  "ceiling: the paper's R200 regime", "minus GFLOPs [95% CI]", "A predictor that trains nothing"):
        assert words in md, words
    assert "Sanity floor: a logistic regression on the pixels" in md
    cache = tmp / "reports" / loaded.name / "floor.json"
    assert set(json.loads(cache.read_text())["top1"]) == {"0", "1"}


def test_compare_lists_readouts_yardsticks_and_the_ceiling(reported: tuple[Path, object, str]) -> None:
    from ablate.report.compare import write_compare

    tmp, loaded, _ = reported
    paths = write_compare([loaded, loaded], tmp / "results", tmp / "reports", name="twice")
    out = tmp / "reports" / "compare-twice"
    assert out / "compare-agreement.csv" in paths
    summary = pd.read_csv(out / "compare.csv")
    for col in ("readout", "gflops_rho_levels", "ceiling_rho_changes", "minus_gflops_rho_changes_lo",
                "minus_ceiling_big_same_hi", "minus_step_rho_levels", "loss_rho_changes_lo",
                "train_loss_sum_rho_levels"):
        assert col in summary.columns, col
    assert "minus_step_rho_changes" not in summary.columns
    long = pd.read_csv(out / "compare-agreement.csv")
    assert set(long["kind"]) == {"readout", "predictor", "ceiling"} and set(long["study"]) == {loaded.name}
    md = (out / "compare.md").read_text()
    assert "## Agreement per readout, beside the yardsticks" in md and "minus the ceiling [95% CI]" in md


def test_floor_is_cached_and_only_for_in_memory_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = roadmap_study(tmp_path, n=2, seeds="[0]").study
    first = linear_floor(study, tmp_path)
    assert first is not None and 0 <= first["mean"] <= 100

    def boom(*_: object) -> float:
        raise AssertionError("retrained")

    monkeypatch.setattr("ablate.report.floor.linear_top1", boom)
    assert linear_floor(study, tmp_path)["top1"] == first["top1"]  # cached
    other = study.model_copy(update={"data": study.data.model_copy(update={"dataset": "imagefolder"})})
    assert linear_floor(other, tmp_path) is None
    assert floor_lines(first, 200.0)[0].endswith("is above it.")


def test_the_study_field_offers_exactly_the_readouts() -> None:
    from typing import get_args

    from ablate.config.study import Evidence
    from ablate.evidence import READOUTS

    assert get_args(Evidence.model_fields["readout"].annotation) == tuple(READOUTS)


def test_rounds_plan_from_the_studys_readout(tmp_path: Path) -> None:
    """The adaptive rule's planner reads the same numbers the report replays: `readout: loss` plans from the
    negated losses."""
    from ablate.sweep.ledger import Ledger
    from ablate.sweep.options import LedgerOptions
    from ablate.sweep.record import TrialRecord
    from ablate.sweep.rounds import _scores

    loaded = roadmap_study(tmp_path, n=2, seeds="[0, 1]")
    ledger = Ledger(loaded, LedgerOptions(None, tmp_path / "results"))
    for v in loaded.variants:
        for seed in (0, 1):
            ledger.store.enqueue(ledger.attrs(v, seed))
            ledger.complete(ledger.pop(), TrialRecord(top1=50.0, loss=0.5 + v.index, epochs=3))
    latest = ledger.latest()
    assert {s for series in _scores(ledger, latest).values() for s in series} == {50.0}
    by_loss = load_study(loaded.file, ["evidence.readout=loss"])  # the same variants and ids
    got = _scores(Ledger(by_loss, LedgerOptions(None, tmp_path / "results")), latest)
    assert sorted(float(s.iloc[0]) for s in got.values()) == [-1.5, -0.5]
