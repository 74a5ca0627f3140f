"""Reports from synthetic result sets: results.csv and metrics.csv written by hand for a tiny study file,
so names and ids match what `ablate run` would have written. No training, no network."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ablate.config.errors import StudyError
from ablate.config.load import LoadedStudy, load_study
from ablate.config.net import NetConfig
from ablate.report import analysis as A
from ablate.report import write_report

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
    """results/<study>/results.csv with the columns of ablate.sweep.results.result_rows, and a metrics.csv
    per trial that has run. outcome[(variant index, seed)] = {status, top1, fail_reason, epochs_run}."""
    d = root / loaded.name
    rows = []
    for v in loaded.variants:
        for seed in loaded.study.seeds:
            o = {"status": "done", "top1": 90.0 + v.index * 0.1, **outcome.get((v.index, seed), {})}
            done = o["status"] == "done"
            ref = v.reference
            row: dict[str, Any] = {"index": v.index, "name": v.name, "group": v.group, "id": v.id,
                                   "trial_id": v.trial_id(seed), "seed": seed, "status": o["status"],
                                   "attempts": 1 if o["status"] != "new" else 0, "fail_reason": o.get("fail_reason"),
                                   "model": "ablate"}
            net = v.train_net.model_dump(mode="json")
            for field in NetConfig.model_fields:
                value = net.get(field)
                row[field] = str(list(value)) if isinstance(value, list) else value
            gfl = ref.gflops if ref and ref.gflops else 4.0 + 0.05 * v.index
            row.update(params=25e6 + 1e5 * v.index, gflops=gfl + 0.02, params_train=1e6, gflops_train=gfl / 200,
                       image_size=32, dataset="synthetic", recipe=v.recipe.preset, epochs_planned=epochs,
                       top1=o["top1"] if done else None, top5=99.0 if done else None, top1_best=None,
                       top5_best=None, ema_top1=None, ema_top5=None, loss=0.3 if done else None,
                       epochs=epochs if done else None, train_img_per_s=800 - 20 * v.index if done else None,
                       infer_img_per_s=2500 - 50 * v.index if done else None, peak_mem_mb=300 if done else None,
                       wall_seconds=30 if done else None, device="cpu" if done else None,
                       ref_top1=ref.top1 if ref else None, ref_top1_std=ref.top1_std if ref else None,
                       ref_gflops=ref.gflops if ref else None, ref_params=None)
            rows.append(row)
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
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    return d / "results.csv"


def build(loaded: LoadedStudy, tmp: Path, outcome: dict | None = None) -> tuple[list[Path], str]:
    write_results(loaded, tmp / "results", outcome or {})
    paths = write_report(loaded, tmp / "results", tmp / "reports")
    return paths, (tmp / "reports" / loaded.name / "report.md").read_text()


def table_row(md: str, name: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith("| ") and f"| {name} |" in ln)
    return [c.strip() for c in line.strip("|").split(" | ")]


# ---------------------------------------------------------------- statistics


def test_t_distribution_matches_tables() -> None:
    assert A.t_two_sided_p(12.706, 1) == pytest.approx(0.05, abs=2e-4)
    assert A.t_two_sided_p(2.228, 10) == pytest.approx(0.05, abs=2e-4)
    assert A.t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert A.t_two_sided_p(4.303, 2) == pytest.approx(0.05, abs=2e-4)


def test_spearman_by_hand() -> None:
    # ranks x: 1 3 2 4 5, ranks y: 1 3 4 5 2 -> sum d^2 = 14 -> rho = 1 - 6*14/(5*24) = 0.3
    rho, n = A.spearman([90.0, 90.5, 90.3, 91.0, 91.2], [76.13, 78.82, 79.36, 79.51, 78.28])
    assert (rho, n) == (pytest.approx(0.3), 5)
    rho, _ = A.spearman([1, 2, 2, 3], [1, 2, 3, 4])  # ties share their mean rank: Pearson of ranks
    assert rho == pytest.approx(0.9486833)
    assert math.isnan(A.spearman([1, 2], [2, 1])[0])


def test_pareto_mask() -> None:
    cost, top1 = [1.0, 2.0, 3.0, 2.5, float("nan")], [80.0, 82.0, 81.0, 83.0, 99.0]
    assert A.pareto_mask(cost, top1).tolist() == [True, True, False, True, False]
    assert A.pareto_mask(cost, top1, lower_cost_is_better=False).tolist() == [False, False, True, True, False]


# ---------------------------------------------------------------- reports


def test_complete_roadmap_report(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=5)
    measured = [90.0, 90.5, 90.3, 91.0, 91.2]
    paths, md = build(loaded, tmp_path, {(i, 0): {"top1": m} for i, m in enumerate(measured)})
    out = tmp_path / "reports" / "synth"
    for f in ("roadmap.png", "roadmap.svg", "pareto.png", "curves.png", "report.md", "report.html"):
        assert (out / f).is_file() and (out / f) in paths, f
    row = table_row(md, "stage ratio")
    assert row[:4] == ["3", "stage ratio", "macro design", "done"]
    assert "90.30 (n=1)" in row and "-0.20" in row and "79.36 ± 0.07" in row and "+0.54" in row
    assert "within paper noise" in row[-3]  # |-0.20| < 2*sqrt(2)*0.075 (the references' median std)
    assert table_row(md, "patchify stem")[-3] == "above paper noise"
    # agreement: levels 0.3 (by hand above); changes +0.5 -0.2 +0.7 +0.2 vs +2.69 +0.54 +0.15 -1.23:
    # ranks 3 1 4 2 vs 4 3 2 1 -> sum d^2 = 10 -> rho = 1 - 6*10/(4*15) = 0.0; signs agree in 2 of 4
    agree = A.agreement(A.variant_table(pd.read_csv(tmp_path / "results" / "synth" / "results.csv")))
    assert agree["rho_levels"] == pytest.approx(0.3) and agree["rho_deltas"] == pytest.approx(0.0)
    assert (agree["sign_agree"], agree["sign_n"]) == (2, 4)
    assert "over 5 steps: 0.30" in md and "over 4 steps: 0.00" in md and "2 of 4 steps" in md
    assert "Best measured top-1: **depthwise conv** with 91.20" in md
    assert "torch " in md and "timm " in md and "ablate " in md and "device: cpu" in md


def test_html_is_self_contained(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=4)
    build(loaded, tmp_path)
    page = (tmp_path / "reports" / "synth" / "report.html").read_text()
    srcs = re.findall(r"""src=['"]([^'"]*)""", page)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""(href|src)=['"]?(https?:|//|[\w./-]+\.(png|svg|css|js))""", page)
    assert "<table>" in page and "stage ratio" in page


def test_partial_study_shows_unfinished_rows(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=6)
    outcome = {(3, 0): {"status": "running", "epochs_run": 1}, (4, 0): {"status": "queued"},
               (5, 0): {"status": "new"}}
    _, md = build(loaded, tmp_path, outcome)
    assert table_row(md, "patchify stem")[3] == "running"
    assert table_row(md, "depthwise conv")[3] == "queued"
    assert table_row(md, "width 64 -> 96")[3] == "not run"
    assert "trials: 3 done, 1 running, 1 queued, 1 not run" in md
    assert "Not (all) finished: patchify stem (running), depthwise conv (queued), width 64 -> 96 (not run)" in md
    # a variant the study file has but results.csv does not (added after the run) is shown as not run
    extra = roadmap_study(tmp_path, n=7)
    paths = write_report(extra, tmp_path / "results", tmp_path / "reports")
    md = (tmp_path / "reports" / "synth" / "report.md").read_text()
    assert table_row(md, "inverting dimensions")[3] == "not run" and paths


def test_failed_trials_are_listed_with_reasons(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=5)
    reason = "non-finite loss (nan) at epoch 2, step 5"
    outcome = {(2, 0): {"status": "failed", "fail_reason": reason, "epochs_run": 1},
               (4, 0): {"status": "interrupted", "fail_reason": "worker died (no heartbeat)"}}
    _, md = build(loaded, tmp_path, outcome)
    failed = md.split("## Failed trials")[1].split("##")[0]
    assert f"| stage ratio | 0 | failed | 1 | {reason} |" in failed
    assert "| depthwise conv | 0 | interrupted | 1 | worker died (no heartbeat) |" in failed
    row = table_row(md, "stage ratio")
    assert row[3] == "failed" and "—" in row  # no top-1, no change
    assert table_row(md, "patchify stem")[-4] == "—"  # its previous step has no result: no change claimed


def test_several_seeds_paired_comparison(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=4, seeds="[0, 1, 2]")
    base = {0: 90.0, 1: 90.4, 2: 89.8}
    outcome = {}
    for s, b in base.items():
        outcome[(0, s)] = {"top1": b}
        outcome[(1, s)] = {"top1": b + [0.3, -0.25, 0.05][s]}  # within noise: differences change sign
        outcome[(2, s)] = {"top1": b + [0.3, -0.25, 0.05][s] + [1.0, 1.1, 0.9][s]}  # consistent +1: real
        outcome[(3, s)] = {"top1": b + 1.1}
    _, md = build(loaded, tmp_path, outcome)
    row = table_row(md, "ResNet-50 (modern recipe)")
    assert row[-3].startswith("within noise, p=") and row[8] == "90.10 ± 0.23 (n=3)"
    row = table_row(md, "stage ratio")
    assert row[-3].startswith("real, p=0.0")
    d = [1.0, 1.1, 0.9]  # paired t by hand: mean 1.0, sd 0.1, t = 1.0 / (0.1 / sqrt(3)) = 17.32, df 2 -> p 0.0033
    t = A.paired_test(pd.Series([0.0, 0.0, 0.0]), pd.Series(d))
    assert t["t"] == pytest.approx(17.3205, rel=1e-4) and t["p"] == pytest.approx(0.003317, rel=1e-2)
    assert "Within seed noise" in md and "ResNet-50 (modern recipe) (+0.03)" in md
    assert "± " in table_row(md, "stage ratio")[8]


def test_grid_report_has_a_chart_per_field(tmp_path: Path) -> None:
    loaded = grid_study(tmp_path, "{kernel_size: [3, 5, 7]}")
    outcome = {(2, 1): {"status": "failed", "fail_reason": "out of memory"}}
    paths, md = build(loaded, tmp_path, outcome)
    out = tmp_path / "reports" / "grid"
    assert (out / "grid_kernel_size.png") in paths and not (out / "roadmap.png").exists()
    assert "| # | name | kernel_size | status |" in md
    assert table_row(md, "kernel_size=7")[3] == "1 done, 1 failed"
    assert "out of memory" in md


def test_two_field_grid_gets_a_heatmap(tmp_path: Path) -> None:
    loaded = grid_study(tmp_path, "{kernel_size: [3, 7], recipe.epochs: [1, 2]}", seeds="[0]", name="grid2")
    paths, md = build(loaded, tmp_path)
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
    assert "3 row(s) of results.csv belong to another version" in md
    assert table_row(md, "stage ratio")[3] == "not run"


def test_twenty_steps_render_in_under_ten_seconds(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=20, seeds="[0, 1]")
    outcome = {(i, s): {"top1": 88 + 0.2 * i + 0.1 * s} for i in range(20) for s in (0, 1)}
    outcome[(7, 1)] = {"status": "failed", "fail_reason": "boom"}
    outcome[(19, 0)] = outcome[(19, 1)] = {"status": "new"}
    write_results(loaded, tmp_path / "results", outcome)
    t0 = time.perf_counter()
    paths = write_report(loaded, tmp_path / "results", tmp_path / "reports")
    seconds = time.perf_counter() - t0
    assert seconds < 10, seconds
    assert len(paths) == 6
    md = (tmp_path / "reports" / "synth" / "report.md").read_text()
    assert table_row(md, "drop path 0.2")[3] == "not run (2 seeds)"


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
