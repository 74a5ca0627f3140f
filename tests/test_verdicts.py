"""The verdict rules (ablate/evidence.py): corrections against hand-computed values, the three outcomes,
the looks of the adaptive rule, replication agreement, and the simulation that shows the error rate."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ablate import evidence as V

ROOT = Path(__file__).resolve().parents[1]


def test_holm_and_bh_match_hand_computed_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> running max 0.06
    assert V.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p x m / rank = 0.02, 0.02, 0.04, 0.04 (already monotone from the top)
    assert V.bh(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert V.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    a, e = V.adjust(p, None, "none")
    assert list(a) == p and list(e) == [1.0] * 4


def test_holm_counts_changes_not_hypotheses_when_both_questions_are_asked() -> None:
    # two changes, each with a "no effect" p and an equivalence p: at most one of a change's two nulls is
    # true, so the first step multiplies by 2 changes (plain Holm over 4 hypotheses would multiply by 4)
    p0, pe = [0.001, 0.2], [0.9, 0.01]
    a, e = V.adjust(p0, pe, "holm")
    # sorted 0.001 (change 0; 2 changes left) -> 0.002; 0.01 (change 1; 2 left) -> 0.02;
    # 0.2 (change 1; changes left among 0.2, 0.9: 2) -> 0.4; 0.9 (change 0 only) -> 0.9
    assert list(a) == pytest.approx([0.002, 0.4]) and list(e) == pytest.approx([0.9, 0.02])
    assert list(V.holm([0.001, 0.01, 0.2, 0.9])) == pytest.approx([0.004, 0.03, 0.4, 0.9])


def test_tests_are_scipy_t_tests() -> None:
    rng = np.random.default_rng(3)
    for n in (2, 3, 7):
        d = rng.normal(0.4, 1.0, n)
        t = V.test_change(d, 1.0)
        assert t["p"] == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
        tost = max(stats.ttest_1samp(d, -1.0, alternative="greater").pvalue,
                   stats.ttest_1samp(d, 1.0, alternative="less").pvalue)
        assert t["p_equiv"] == pytest.approx(tost)
        lo, hi = V.interval(d, 0.9)
        assert (lo, hi) == pytest.approx(stats.t.interval(0.9, n - 1, loc=d.mean(), scale=stats.sem(d)))


def _pairs(effects: list[float], sd: list[float], n: int, seed: int = 0, first: int = 0
           ) -> list[tuple[pd.Series, pd.Series]]:
    rng = np.random.default_rng(seed)
    out = []
    for mu, s in zip(effects, sd, strict=True):
        before = pd.Series(70 + rng.normal(0, 1, n), index=range(first, first + n))
        noise = rng.normal(0, 1, n)
        if n > 1:
            noise = (noise - noise.mean()) / noise.std(ddof=1)  # exactly sd s and mean mu: a planted effect
        out.append((before, before + mu + s * noise))
    return out


def test_planted_effect_helped_planted_null_equivalent_noisy_undetermined() -> None:
    rule = V.Rule(margin=1.0, seeds=tuple(range(5)))
    pairs = _pairs([3.0, 0.0, 0.0, -3.0], [0.3, 0.2, 3.0, 0.3], 5)
    res = V.judge_family(pairs, rule)
    assert [r["verdict"] for r in res] == ["helped", "equivalent", "undetermined", "hurt"]
    assert all(r["family"] == 4 for r in res)
    helped, equiv, noisy, _ = res
    assert helped["lo"] > 0 and helped["p_adj"] < 0.05 and helped["mean"] == pytest.approx(3.0)
    assert -1.0 < equiv["lo"] < equiv["hi"] < 1.0 and equiv["p_equiv_adj"] < 0.05
    assert noisy["lo"] < 0 < noisy["hi"] and noisy["seeds_to_settle"] > 5
    # one seed: not judged; no family member
    one = V.judge_family(_pairs([3.0], [0.3], 1), rule)
    assert one[0]["verdict"] == "not judged" and one[0]["family"] == 0


def test_correction_makes_a_borderline_change_undetermined() -> None:
    # p of one change alone ~0.02: a finding uncorrected, not after Holm over 16 changes
    pairs = _pairs([1.0] + [0.0] * 15, [0.6] + [2.0] * 15, 5, seed=1)
    assert V.judge_family(pairs[:1], V.Rule(correction="none"))[0]["verdict"] == "helped"
    res = V.judge_family(pairs, V.Rule(correction="holm"))
    assert res[0]["verdict"] == "undetermined" and res[0]["p_adj"] > 0.05 and res[0]["family"] == 16


def test_looks_spend_alpha_and_add_the_next_seeds() -> None:
    rule = V.Rule(margin=1.0, seeds=(10, 11, 12), max_seeds=7, round_seeds=2)
    looks = rule.looks()
    assert [n for n, _ in looks] == [3, 5, 7]
    assert sum(a for _, a in looks) == pytest.approx(0.05) and looks[0][1] < looks[1][1] < looks[2][1]
    # O'Brien-Fleming type: 2 - 2 Phi(1.96 / sqrt(3/7)) at the first look
    assert looks[0][1] == pytest.approx(2 - 2 * stats.norm.cdf(stats.norm.ppf(0.975) / math.sqrt(3 / 7)))
    assert rule.seeds_at(1) == {10, 11, 12} and rule.seeds_at(3) == {10, 11, 12, 13, 14, 15, 16}
    assert V.Rule(seeds=(0, 1, 2)).looks() == [(3, 0.05)]
    # round 1 gives the variants of every open change seeds 13, 14; nothing is planned before look 1 is whole
    pairs = _pairs([0.5, 8.0], [2.0, 0.1], 3, first=10)
    assert V.plan(pairs, rule) == {1: {0: [13, 14]}}


def test_a_later_look_waits_for_its_whole_round() -> None:
    rule = V.Rule(margin=1.0, seeds=(0, 1, 2), max_seeds=5, round_seeds=2)
    rng = np.random.default_rng(0)
    before = pd.Series(70 + rng.normal(0, 1, 5))
    after = before + 0.3 + rng.normal(0, 2.0, 5)
    partial = V.judge_family([(before.iloc[:4], after.iloc[:4])], rule)[0]  # seed 3 done, seed 4 still training
    assert partial["look"] == 1 and partial["n"] == 3
    whole = V.judge_family([(before, after)], rule)[0]
    assert whole["look"] == 2 and whole["n"] == 5


def test_replication_agreement() -> None:
    assert V.agreement(["helped", "helped"]) == "same"
    assert V.agreement(["undetermined", "undetermined"]) == "same"
    assert V.agreement(["helped", "undetermined"]) == "compatible"
    assert V.agreement(["equivalent", "not judged"]) == "compatible"
    assert V.agreement(["helped", "hurt"]) == "contradictory"
    assert V.agreement(["hurt", "equivalent"]) == "contradictory"  # intervals not given: cannot both hold
    # an effect shown beyond the margin vs an equivalence: no effect size fits both
    assert V.agreement(["helped", "equivalent"], [(2.5, 4.0), (-0.9, 1.8)]) == "contradictory"
    # a small effect and an equivalence sharing values (an effect of +1 fits both): compatible, not the same
    assert V.agreement(["helped", "equivalent"], [(0.02, 2.32), (-0.92, 1.81)]) == "compatible"
    assert V.agreement(["helped", "hurt"], [(0.1, 1.0), (-1.0, -0.1)]) == "contradictory"
    assert V.agreement(["helped", ""]) == ""


def test_verdict_simulation_small() -> None:
    """bench/verdict_sim.py, small: it runs the shipped rule, the false-finding rate is printed per scenario
    and stays near alpha, and big planted effects are found."""
    out = subprocess.run([sys.executable, "bench/verdict_sim.py", "--studies", "60", "--seed", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rates = [float(x) for x in re.findall(r"family-wise false-finding rate: ([0-9.]+) \(60 studies", out)]
    assert len(rates) == 3 and all(r <= 0.15 for r in rates), out
    power = re.findall(r"power \(right settled verdict\) by planted \|effect\|: (.*)", out)[1]
    biggest = float(power.split(",")[-1].split(":")[1])
    assert biggest >= 0.9, out


def test_a_partial_round_plans_nothing() -> None:
    """While the study's seeds are still training (2 of 3 finished), no round is planned: a look needs its
    whole data; once all 3 are in, round 1 gives the open change seeds 3, 4, 5."""
    rule = V.Rule(seeds=(0, 1, 2), max_seeds=6, round_seeds=3)
    whole = _pairs([0.3], [2.0], 3)
    assert V.plan([(a.iloc[:2], b.iloc[:2]) for a, b in whole], rule) == {}
    assert V.plan(whole, rule) == {1: {0: [3, 4, 5]}}


@pytest.mark.slow
def test_compare_of_a_replication_run_gives_per_step_agreement(tmp_path: Path) -> None:
    """The same steps run twice with disjoint seeds (the second through --set), compared with `N:` overrides:
    compare-steps.csv and compare.md give each step's agreement between the two runs."""
    from conftest import run_cli

    study = tmp_path / "rep.yaml"
    study.write_text("""
name: rep
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1.0, stem_width: 16}
data: {dataset: synthetic, image_size: 16, train_subset: 256, val_subset: 128}
recipe: {preset: classic, epochs: 1, batch_size: 32, warmup_epochs: 0, lr: 0.05}
seeds: [0, 1]
evidence: {margin: 50}
steps:
  - {name: base}
  - {name: k5, set: {kernel_size: 5}}
""")
    rep = ["--set", "seeds=[10, 11]", "--set", "name=rep-2"]
    for extra in ([], rep):
        ran = run_cli("run", str(study), *extra, cwd=tmp_path, env={"ABLATE_WORKERS": "1"})
        assert ran.returncode == 0, ran.stderr[-2000:]
    bad = run_cli("compare", str(study), str(study), "--set", "3:name=x", cwd=tmp_path)
    assert bad.returncode == 2 and "study 3 of 2" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    out = run_cli("compare", str(study), str(study), "--set", "2:name=rep-2", "--set", "2:seeds=[10, 11]",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    steps = pd.read_csv(tmp_path / "reports" / "compare-rep-rep-2" / "compare-steps.csv")
    # a margin of 50 points: every change of a 10-class synthetic task is equivalent in both runs
    assert list(steps["rep:verdict"].fillna("")) == ["", "equivalent"]
    assert list(steps["rep-2:verdict"].fillna("")) == ["", "equivalent"]
    assert list(steps["agreement"].fillna("")) == ["", "same"]
    md = (tmp_path / "reports" / "compare-rep-rep-2" / "compare.md").read_text()
    assert "Verdicts across the studies (agreement): 1 same, 0 compatible, 0 contradictory" in md
