"""Reports from synthetic result sets: a real ledger and metrics.csv files written for a tiny study file,
so names and ids match what `ablate run` would have written. No training, no network."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ablate.config.errors import StudyError
from ablate.config.load import load_study
from ablate.config.variant import LoadedStudy
from ablate.report import analysis as A
from ablate.report import stats as S
from ablate.report.reading import read_results
from ablate.report.writer import write_report

HEAD = """name: {name}
description: synthetic study for report tests
model: {{preset: resnet50}}
data: {{dataset: synthetic, image_size: 32, train_subset: 64}}
recipe: {{preset: modern, epochs: 3, batch_size: 16}}
scale: {{width: 0.25, depth: 0.34}}
seeds: {seeds}
"""

STEPS = [  # (name, group, set, paper top-1, paper std, GFLOPs)
    ("ResNet-50 (classic recipe)", "training", "{recipe.preset: classic}", 76.13, None, 4.09),
    ("ResNet-50 (modern recipe)", "training", "{recipe.preset: modern}", 78.82, 0.07, 4.09),
    ("stage ratio", "macro design", "{depths: [3, 3, 9, 3]}", 79.36, 0.07, 4.53),
    ("patchify stem", "macro design", "{stem: patchify, patch_size: 4}", 79.51, 0.18, 4.42),
    ("depthwise conv", "ResNeXt", "{groups: depthwise}", 78.28, 0.08, 2.35),
    ("width 64 -> 96", "ResNeXt", "{stem_width: 96, dims: [384, 768, 1536, 3072]}", 80.50, 0.02, 5.27),
    ("inverting dimensions", "inverted bottleneck", "{dims: [96, 192, 384, 768], expansion: 4}", 80.64, 0.03, 4.64),
    ("move up depthwise conv", "large kernel", "{spatial_conv: first}", 79.92, 0.08, 4.07),
    ("kernel size 5", "large kernel", "{kernel_size: 5}", 80.35, 0.08, 4.10),
    ("kernel size 7", "large kernel", "{kernel_size: 7}", 80.57, 0.14, 4.15),
    ("kernel size 9", "large kernel", "{kernel_size: 9}", 80.57, 0.06, 4.21),
    ("kernel size 11", "large kernel", "{kernel_size: 11}", 80.47, 0.11, 4.29),
    ("ReLU -> GELU", "micro design", "{activation: gelu, kernel_size: 7}", 80.62, 0.14, 4.15),
    ("fewer activations", "micro design", "{activations: one}", 81.27, 0.06, 4.15),
    ("fewer norms", "micro design", "{norms: one}", 81.41, 0.09, 4.15),
    ("BN -> LN", "micro design", "{norm: layer}", 81.47, 0.09, 4.15),
    ("separate downsampling (ConvNeXt-T)", "micro design", "{downsample: separate, layer_scale: 1.0e-6}", 81.97,
     0.06, 4.49),
    ("kernel size 9 again", "extra", "{kernel_size: 9}", None, None, 4.55),
    ("SiLU", "extra", "{activation: silu}", None, None, 4.55),
    ("drop path 0.2", "extra", "{drop_path: 0.2}", None, None, 4.55),
]


def roadmap_study(tmp: Path, n: int = 6, seeds: str = "[0]", name: str = "synth") -> LoadedStudy:
    lines = [HEAD.format(name=name, seeds=seeds), "steps:"]
    for step, group, changes, ref, std, gfl in STEPS[:n]:
        lines.append(f"  - name: {step}\n    group: {group}\n    set: {changes}")
        if ref is not None:
            lines.append(f"    reference: {{top1: {ref}, gflops: {gfl}" + (f", top1_std: {std}}}" if std else "}"))
    path = tmp / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_study(path)


def grid_study(tmp: Path, grid: str, seeds: str = "[0, 1]", name: str = "grid") -> LoadedStudy:
    path = tmp / f"{name}.yaml"
    path.write_text(HEAD.format(name=name, seeds=seeds).replace("resnet50", "convnext_tiny") + f"grid: {grid}\n")
    return load_study(path)


def write_results(loaded: LoadedStudy, root: Path, outcome: dict[tuple[int, int], dict[str, Any]],
                  epochs: int = 3) -> Path:
    """A real ledger (results/<study>/ledger.journal, written through ablate's Ledger) holding the outcome of
    every trial, and a metrics.csv per trial that has run. outcome[(variant index, seed)] = {status, top1,
    fail_reason, epochs_run}; status one of done, failed, interrupted, running, queued, new (not in the
    ledger). Reports are built from the ledger alone."""
    from ablate.sweep.ledger import Ledger
    from ablate.sweep.options import LedgerOptions
    from ablate.sweep.record import TrialRecord

    d = root / loaded.name
    ledger = Ledger(loaded, LedgerOptions(None, root))
    todo = [(v, seed, {"status": "done", "top1": 90.0 + v.index * 0.1, **outcome.get((v.index, seed), {})})
            for v in loaded.variants for seed in loaded.study.seeds]
    # queued trials last: the ones before them are popped one at a time right after being enqueued
    for v, seed, o in sorted(todo, key=lambda x: x[2]["status"] == "queued"):
        if o["status"] == "new":
            continue
        ledger.store.enqueue(ledger.attrs(v, seed))
        if o["status"] == "queued":
            continue
        item = ledger.pop()
        assert item is not None and item.key == v.trial_id(seed)
        done = o["status"] == "done"
        if done:
            ledger.complete(item, TrialRecord(top1=o["top1"], top5=99.0, loss=0.3, epochs=epochs,
                                              train_img_per_s=800 - 20 * v.index,
                                              infer_img_per_s=2500 - 50 * v.index, peak_mem_mb=300, wall_seconds=30,
                                              device="cpu"))
        elif o["status"] in ("failed", "interrupted"):
            ledger.fail(item, o.get("fail_reason") or "boom", "error" if o["status"] == "failed" else "interrupted")
        ran = o.get("epochs_run", epochs if done else 0)
        if ran:
            t = d / "trials" / v.trial_id(seed)
            t.mkdir(parents=True, exist_ok=True)
            final = o["top1"] if done else 80.0
            epoch = range(1, ran + 1)
            pd.DataFrame({"epoch": epoch, "lr": 1e-3, "train_loss": [2.0 / e for e in epoch], "val_loss": 0.5,
                          "top1": [final - 5 * (epochs - e) for e in epoch], "top5": 99.0,
                          "ema_top1": None, "ema_top5": None, "epoch_seconds": 10.0,
                          "train_img_per_s": 800.0}).to_csv(t / "metrics.csv", index=False)
    return d / "ledger.journal"


def build(loaded: LoadedStudy, tmp: Path, outcome: dict | None = None, draw: bool = False) -> tuple[list[Path], str]:
    """The report of `loaded` with the given outcomes; charts only where a test looks at them (they are most
    of a report's time)."""
    write_results(loaded, tmp / "results", outcome or {})
    paths = write_report(loaded, tmp / "results", tmp / "reports", draw=draw)
    return paths, (tmp / "reports" / loaded.name / "report.md").read_text()


def table_row(md: str, name: str) -> list[str]:
    """The cells of the markdown table row whose name column (the second) is `name`."""
    for ln in md.splitlines():
        if ln.startswith("| "):
            cells = [c.strip() for c in ln.strip().strip("|").split(" | ")]
            if len(cells) > 1 and cells[1] == name:
                return cells
    raise AssertionError(f"no table row named {name!r}")


# ---------------------------------------------------------------- statistics


def test_intervals_match_t_tables() -> None:
    # mean 1.0, sd 0.1, n 3: half-width = t(0.975, 2) * 0.1 / sqrt(3) = 4.303 * 0.0577 = 0.2484
    mean, lo, hi = S.t_interval([1.0, 1.1, 0.9])
    assert mean == pytest.approx(1.0) and hi - mean == pytest.approx(0.24841, rel=1e-3) and lo == pytest.approx(2 - hi)
    t = S.paired_test(pd.Series([0.0, 0.0, 0.0]), pd.Series([1.0, 1.1, 0.9]))
    assert t["t"] == pytest.approx(17.3205, rel=1e-4) and t["p"] == pytest.approx(0.003317, rel=1e-2)
    assert (t["lo"], t["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert math.isnan(S.t_interval([3.0])[1]) and S.paired_test(pd.Series([1.0]), pd.Series([2.0]))["n"] == 1
    same = S.paired_test(pd.Series([1.0, 2.0]), pd.Series([1.5, 2.5]))  # identical differences: no spread
    assert (same["p"], same["lo"], same["hi"]) == (0.0, 0.5, 0.5)
    # only the seeds both sides finished are paired
    part = S.paired_test(pd.Series({0: 1.0, 1: 2.0, 2: 3.0}), pd.Series({1: 2.5, 2: 3.4}))
    assert part["n"] == 2 and part["mean"] == pytest.approx(0.45)


def test_spearman_by_hand() -> None:
    # ranks x: 1 3 2 4 5, ranks y: 1 3 4 5 2 -> sum d^2 = 14 -> rho = 1 - 6*14/(5*24) = 0.3
    rho, n = S.spearman([90.0, 90.5, 90.3, 91.0, 91.2], [76.13, 78.82, 79.36, 79.51, 78.28])
    assert (rho, n) == (pytest.approx(0.3), 5)
    rho, _ = S.spearman([1, 2, 2, 3], [1, 2, 3, 4])  # ties share their mean rank: Pearson of ranks
    assert rho == pytest.approx(0.9486833)
    assert math.isnan(S.spearman([1, 2], [2, 1])[0])


def test_spearman_of_many_columns_is_scipys_column_by_column() -> None:
    from scipy import stats as scipy_stats

    from ablate.report.stats import spearman_columns

    rng = np.random.default_rng(0)
    y = np.array([1.0, 2.0, 2.0, np.nan, 5.0, 3.0, 0.5])  # a tie and a missing row
    x = np.round(rng.normal(size=(7, 40)), 1)  # rounding makes ties inside columns
    x[:, 0] = 4.0  # a constant column
    got = spearman_columns(x, y)
    keep = ~np.isnan(y)
    want = [scipy_stats.spearmanr(x[keep, k], y[keep]).statistic if k else np.nan for k in range(40)]
    assert np.allclose(got, want, equal_nan=True) and np.isnan(got[0])
    assert all(math.isclose(got[k], S.spearman(x[:, k], y)[0]) for k in range(1, 40))
    assert np.isnan(spearman_columns(x[:2], y[:2])).all()  # fewer than 3 pairs


def test_pareto_mask() -> None:
    cost, top1 = [1.0, 2.0, 3.0, 2.5, float("nan")], [80.0, 82.0, 81.0, 83.0, 99.0]
    assert S.pareto_mask(cost, top1).tolist() == [True, True, False, True, False]
    assert S.pareto_mask(cost, top1, lower_cost_is_better=False).tolist() == [False, False, True, True, False]


# ---------------------------------------------------------------- reports


@pytest.mark.slow
def test_complete_roadmap_report(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=5)
    measured = [90.0, 90.5, 90.3, 91.0, 91.2]
    paths, md = build(loaded, tmp_path, {(i, 0): {"top1": m} for i, m in enumerate(measured)}, draw=True)
    out = tmp_path / "reports" / "synth"
    for f in ("roadmap.png", "roadmap.svg", "pareto.png", "curves.png", "report.md", "report.html"):
        assert (out / f).is_file() and (out / f) in paths, f
    row = table_row(md, "stage ratio")
    assert row[:3] == ["3", "stage ratio", "macro design"] and row[3] == "depths [3,4,6,3]→[3,3,9,3]"
    assert row[4] == "done"
    assert "90.30 (n=1)" in row and "-0.20" in row and "79.36 ± 0.07" in row and "+0.54" in row
    # one seed: every change is listed, none is judged (the paper's seed std is never a basis)
    assert all(table_row(md, n)[-3] == A.UNJUDGED for n in ("stage ratio", "patchify stem", "depthwise conv"))
    assert "1 seed: changes not judged; run with `seeds: [0, 1, 2]`" in md
    found = md.split("## Findings")[1].split("## Results")[0]
    for word in ("Helped", "Hurt", "Equivalent", "Undetermined", "settled"):
        assert word not in found, word
    assert not any(table_row(md, n)[-3].startswith(("helped", "hurt", "equiv", "undet")) for n, *_ in STEPS[:5])
    # agreement: levels 0.3 (by hand below); changes +0.5 -0.2 +0.7 +0.2 vs +2.69 +0.54 +0.15 -1.23:
    # ranks 3 1 4 2 vs 4 3 2 1 -> sum d^2 = 10 -> rho = 1 - 6*10/(4*15) = 0.0. Big paper steps (>= 0.4):
    # +2.69, +0.54, -1.23 -> measured +0.5, -0.2, +0.2: the paper's sign in 1 of 3.
    df, _ = read_results(loaded, tmp_path / "results" / "synth")
    agree = A.agreement(A.variant_table(df), df)
    assert agree["rho_levels"] == pytest.approx(0.3) and agree["rho_deltas"] == pytest.approx(0.0)
    assert (agree["big_same"], agree["big_n"], agree["seeds"]) == (1, 3, 0)
    assert "over 5 steps: 0.30 (1 seed: no interval)" in md and "over 4 steps: 0.00 (1 seed: no interval)" in md
    assert "paper's sign in 1 of the 3 steps whose paper change is ≥ 0.4 points" in md
    assert "Highest mean top-1: **depthwise conv** with 91.20 (n = 1: no interval, so it is not ranked" in md
    assert "torch " in md and "timm " in md and "ablate " in md and "device: cpu" in md
    assert "`modern`: 3 epochs" in md and "`classic`: 3 epochs" in md and "step decay ×0.1 at epochs 1/2/2.6667" in md


@pytest.mark.slow
def test_html_is_self_contained(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=4)
    build(loaded, tmp_path, draw=True)
    page = (tmp_path / "reports" / "synth" / "report.html").read_text()
    srcs = re.findall(r"""src=['"]([^'"]*)""", page)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""(href|src)=['"]?(https?:|//|[\w./-]+\.(png|svg|css|js))""", page)
    assert "<table>" in page and "stage ratio" in page


def test_no_charts_writes_the_tables_only(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=3)
    paths, md = build(loaded, tmp_path, draw=False)
    assert sorted(p.name for p in paths) == ["report.html", "report.md", "results.tex"]
    assert "![" not in md and "<img" not in (tmp_path / "reports" / "synth" / "report.html").read_text()
    assert table_row(md, "stage ratio")[4] == "done"


@pytest.mark.slow
def test_partial_study_shows_unfinished_rows(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=6)
    outcome = {(3, 0): {"status": "running", "epochs_run": 1}, (4, 0): {"status": "queued"},
               (5, 0): {"status": "new"}}
    _, md = build(loaded, tmp_path, outcome)
    assert table_row(md, "patchify stem")[4] == "running"
    assert table_row(md, "depthwise conv")[4] == "queued"
    assert table_row(md, "width 64 -> 96")[4] == "not run"
    assert "trials: 3 done, 1 running, 1 queued, 1 not run" in md
    assert "Not (all) finished: patchify stem (running), depthwise conv (queued), width 64 -> 96 (not run)" in md
    # a variant the study file has but the ledger does not (added after the run) is shown as not run
    extra = roadmap_study(tmp_path, n=7)
    paths = write_report(extra, tmp_path / "results", tmp_path / "reports")
    md = (tmp_path / "reports" / "synth" / "report.md").read_text()
    assert table_row(md, "inverting dimensions")[4] == "not run" and paths


def test_failed_trials_are_listed_with_reasons(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=5)
    reason = "non-finite loss (nan) at epoch 2, step 5"
    outcome = {(2, 0): {"status": "failed", "fail_reason": reason, "epochs_run": 1},
               (4, 0): {"status": "interrupted", "fail_reason": "worker died (no heartbeat)"}}
    _, md = build(loaded, tmp_path, outcome)
    failed = re.sub(r" +", " ", md.split("## Failed trials")[1].split("##")[0])  # cells are padded
    assert f"| stage ratio | 0 | failed | 1 | {reason} |" in failed
    assert "| depthwise conv | 0 | interrupted | 1 | worker died (no heartbeat) |" in failed
    row = table_row(md, "stage ratio")
    assert row[4] == "failed" and "—" in row  # no top-1, no change
    assert table_row(md, "patchify stem")[-4] == "—"  # its previous step has no result: no change claimed


@pytest.mark.slow
def test_planted_effect_is_helped_and_planted_null_undetermined(tmp_path: Path) -> None:
    """3 seeds: step 1 plants no effect (per-seed noise of both signs), step 2 plants +1.0 on top of it, step 3
    plants no effect again. Holm over the family of 3 changes: the effect is `helped`, each null (no margin)
    `undetermined`, and each corrected interval holds the planted value."""
    loaded = roadmap_study(tmp_path, n=4, seeds="[0, 1, 2]")
    base = {0: 90.0, 1: 90.4, 2: 89.8}
    noise = [0.3, -0.25, 0.05]
    outcome = {}
    for s, b in base.items():
        outcome[(0, s)] = {"top1": b}
        outcome[(1, s)] = {"top1": b + noise[s]}  # planted null
        outcome[(2, s)] = {"top1": b + noise[s] + 1.0 + [0.0, 0.1, -0.1][s]}  # planted +1.0
        outcome[(3, s)] = {"top1": b + noise[s] + 1.0 + [0.15, -0.15, 0.0][s]}  # planted null
    _, md = build(loaded, tmp_path, outcome)
    df, _ = read_results(loaded, tmp_path / "results" / "synth")
    t = A.variant_table(df)
    null, effect, null2 = t.iloc[1], t.iloc[2], t.iloc[3]
    assert null["verdict"] == "undetermined" and null["delta_lo"] < 0.0 < null["delta_hi"]
    assert effect["verdict"] == "helped" and effect["delta_lo"] < 1.0 < effect["delta_hi"]
    # raw p 0.0033 is the family's smallest: Holm multiplies it by 3
    assert effect["p"] == pytest.approx(0.003317, rel=1e-2) and effect["p_adj"] == pytest.approx(3 * effect["p"])
    assert null2["verdict"] == "undetermined" and null2["delta_lo"] < 0.0 < null2["delta_hi"]
    assert (effect["family"], effect["pairs"]) == (3, 3)
    row = table_row(md, "ResNet-50 (modern recipe)")
    assert row[-3].startswith("undetermined, p_adj=") and row[9].startswith("90.10 [")
    assert row[9].endswith("(n=3)")
    assert table_row(md, "stage ratio")[-3].startswith("helped, p_adj=0.00995")
    # the interval at the level Holm spends on it (0.05 / 3): t(2) quantile 7.65 x 0.1 / sqrt(3) = 0.44
    assert "+1.00 [+0.56, +1.44]" in table_row(md, "stage ratio")[10]
    assert ("Verdicts on each change vs the previous step: paired t-tests over 3 shared seeds, corrected together "
            "over the family of 3 judged changes by Holm's step-down") in md
    assert "- Helped: stage ratio (+1.00 [+0.56, +1.44])." in md
    assert "stage ratio (+1.00 [+0.56, +1.44])" in md
    assert "Undetermined" in md and "ResNet-50 (modern recipe) (+0.03 [" in md
    assert "1 of 3 judged changes settled (1 helped, 0 hurt)" in md
    assert "not judged" not in md.split("## Findings")[1].split("## Results")[0]
    # rho comes with a bootstrap interval over the 3 seeds
    agree = A.agreement(t, df)
    assert agree["seeds"] == 3 and agree["rho_levels_ci"][0] <= agree["rho_levels"] <= agree["rho_levels_ci"][1]


def test_grid_report_has_a_chart_per_field(tmp_path: Path) -> None:
    loaded = grid_study(tmp_path, "{kernel_size: [3, 5, 7]}")
    outcome = {(2, 1): {"status": "failed", "fail_reason": "out of memory"}}
    paths, md = build(loaded, tmp_path, outcome, draw=True)
    out = tmp_path / "reports" / "grid"
    assert (out / "grid_kernel_size.png") in paths and not (out / "roadmap.png").exists()
    assert "| # | name | kernel_size | status |" in re.sub(r" +", " ", md)
    assert table_row(md, "kernel_size=7")[3] == "1 done, 1 failed"
    assert "out of memory" in md


def test_two_field_grid_gets_a_heatmap(tmp_path: Path) -> None:
    loaded = grid_study(tmp_path, "{kernel_size: [3, 7], recipe.epochs: [1, 2]}", seeds="[0]", name="grid2")
    paths, md = build(loaded, tmp_path, draw=True)
    names = {p.name for p in paths}
    assert {"grid_kernel_size.png", "grid_recipe_epochs.png", "heatmap.png"} <= names
    assert table_row(md, "kernel_size=7,epochs=2")[2:4] == ["7", "2"]


def test_missing_results_is_one_clear_error(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=2)
    with pytest.raises(StudyError, match=r"results: no results yet: run `ablate run .*synth.yaml` first"):
        write_report(loaded, tmp_path / "results", tmp_path / "reports")


def test_results_of_another_study_version_are_not_mixed_in(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=3)
    write_results(loaded, tmp_path / "results", {})
    changed = load_study(loaded.file, ["recipe.epochs=1"])  # other ids
    write_report(changed, tmp_path / "results", tmp_path / "reports")
    md = (tmp_path / "reports" / "synth" / "report.md").read_text()
    assert "trials of 3 variant(s) in the ledger belong to another version" in md
    assert table_row(md, "stage ratio")[4] == "not run"


@pytest.mark.slow
def test_twenty_steps_render_in_under_ten_seconds(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=20, seeds="[0, 1]")
    outcome = {(i, s): {"top1": 88 + 0.2 * i + 0.1 * s} for i in range(20) for s in (0, 1)}
    outcome[(7, 1)] = {"status": "failed", "fail_reason": "boom"}
    outcome[(19, 0)] = outcome[(19, 1)] = {"status": "new"}
    write_results(loaded, tmp_path / "results", outcome)
    from ablate.measure.table import count_study

    count_study(loaded)  # the FLOPs counts are cached by `ablate run` before any report: time the report alone
    t0 = time.perf_counter()
    paths = write_report(loaded, tmp_path / "results", tmp_path / "reports")
    seconds = time.perf_counter() - t0
    assert seconds < 10, seconds
    assert len(paths) == 7 and (tmp_path / "reports" / "synth" / "results.tex").is_file()
    md = (tmp_path / "reports" / "synth" / "report.md").read_text()
    assert table_row(md, "drop path 0.2")[4] == "not run (2 seeds)"


def test_search_charts_from_an_optuna_study() -> None:
    import optuna

    from ablate.report.charts import search_charts

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_int("k", 3, 11) + t.suggest_float("lr", 0.0, 1.0) * 0.1, n_trials=8)
    figs = search_charts(study)
    assert "search_history" in figs and "search_importance" in figs
    import matplotlib.pyplot as plt

    for f in figs.values():
        plt.close(f)


# ---------------------------------------------------------------- pieces of a report, without a ledger


def test_number_formats() -> None:
    from ablate.report.text import fmt, fmt_ci, fmt_rho, one_line, show, slug

    assert (fmt(1.234), fmt(None), fmt(float("nan")), fmt(0.5, signed=True), fmt(812.6, 0)) == \
        ("1.23", "—", "—", "+0.50", "813")
    assert fmt_ci(0.1, 0.25, signed=True) == " [+0.10, +0.25]" and fmt_ci(float("nan"), 1.0) == ""
    assert fmt_rho(0.41, (-0.05, 0.74), 3) == "0.41 [-0.05, 0.74], 3 seeds"
    assert fmt_rho(0.41, (math.nan, math.nan), 1) == "0.41 (1 seed: no interval)"
    assert fmt_rho(math.nan, (0.0, 1.0), 3).startswith("—")
    assert show((3, 3, 9)) == "[3, 3, 9]" and slug("recipe.epochs / x") == "recipe_epochs_x"
    assert one_line("a\n  b") == "a b" and one_line(math.nan) == "(no reason recorded)"


def test_bootstrap_interval_is_reproducible() -> None:
    from ablate.report.stats import bootstrap_interval

    x = pd.Series([0.1, 0.4, -0.2, 0.3, 0.0]).to_numpy()

    def mean(idx: Any) -> float:
        return float(x[idx.astype(int)].mean())

    lo, hi = bootstrap_interval(mean, len(x))
    assert lo <= x.mean() <= hi and (lo, hi) == bootstrap_interval(mean, len(x))


def _judged(rows: list[tuple[str, float, str, int]]) -> pd.DataFrame:
    """A variant table with changes (name, delta, verdict, shared seeds): the columns `findings` reads."""
    return pd.DataFrame([{"name": n, "top1_mean": 90.0 + i, "top1_lo": 89.5 + i, "top1_hi": 90.5 + i, "n": 3,
                          "delta": d, "delta_lo": d - 0.2, "delta_hi": d + 0.2, "verdict": v, "pairs": k,
                          "family": 3, "seeds_to_settle": 12.0 if v == "undetermined" else math.nan,
                          "ref_top1": math.nan, "state": "done", "status": "done"}
                         for i, (n, d, v, k) in enumerate(rows)])


def test_findings_sentences() -> None:
    from ablate.evidence import Rule
    from ablate.report.findings import findings

    t = _judged([("a", math.nan, "", 0), ("b", 0.8, "helped", 3), ("c", -0.6, "hurt", 3),
                 ("d", 0.1, "undetermined", 3)])
    out = findings(t, "steps")
    # no "best" alone: the highest mean with its interval, and the variants it is not told apart from
    assert out[0] == ("Highest mean top-1: **d** with 93.00 [92.50, 93.50] (n = 3, 95 % CI); its interval overlaps "
                      "those of 1 of the 3 other variant(s) (c): not told apart from them on these seeds.")
    assert out[1].startswith("Verdicts on each change vs the previous step: paired t-tests over 3 shared seeds, "
                             "corrected together over the family of 3 judged changes by Holm's step-down")
    assert out[2].startswith("Helped: b (+0.80")
    assert out[3] == "Hurt: c (-0.60 [-0.80, -0.40])."
    assert out[4].startswith("Undetermined") and "d (+0.10 [-0.10, +0.30]; ~12 seeds)" in out[4]
    assert out[5] == "2 of 3 judged changes settled (1 helped, 1 hurt)." and len(out) == 6
    eq = findings(_judged([("a", math.nan, "", 0), ("b", 0.1, "equivalent", 3)]), "grid", rule=Rule(margin=0.5))
    assert eq[2].startswith("Equivalent — no effect beyond ±0.5 points") and "b (+0.10" in eq[2]
    assert eq[3] == "1 of 1 judged changes settled (0 helped, 0 hurt, 1 equivalent)."
    two = findings(_judged([("a", math.nan, "", 0), ("b", 0.5, "helped", 2), ("c", 0.1, "undetermined", 2)]),
                   "grid", rule=Rule(correction="bh"))
    assert two[1].startswith("Verdicts on each change vs 'a': paired t-tests over 2 shared seeds")
    assert "Benjamini-Hochberg" in two[1] and two[2].startswith("Helped: b (+0.50")
    assert "1 degree of freedom" in two[-1]
    one = findings(_judged([("a", math.nan, "", 0), ("b", 0.3, A.UNJUDGED, 1)]), "steps")
    assert one[1].startswith("1 seed: changes not judged") and "b (+0.30 [+0.10, +0.50])" in one[1]
    assert findings(pd.DataFrame(), "steps") == ["The study has no variants."]


def test_markdown_and_latex_rendering() -> None:
    from ablate.report.render import to_markdown

    table = ("table", ["#", "name", "GFLOPs"], [["1", "a|b <i>", "4.09"], ["2", "x_y `code`", "—"]])
    md = to_markdown([("h", 2, "R&D"), ("p", "**bold**"), ("ul", ["one"]), table, ("img", "a.png", "alt")])
    assert md.startswith("## R&amp;D\n\n**bold**\n\n- one\n\n|   # | name")
    assert "|----:|:------------|---------:|" in md  # numbers right-aligned
    assert r"| a\|b &lt;i> |" in md and "![alt](a.png)" in md

