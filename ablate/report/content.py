"""The content of report.md / report.html as blocks (see render.py): what was run, findings, the results
table with its legend, charts, failed trials and how the numbers are computed."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pandas as pd

from ablate.config.variant import LoadedStudy
from ablate.evidence import CORRECTION_NAMES, READOUTS, SETTLED, UNDETERMINED, Rule
from ablate.sweep.states import Status

from .analysis import BIG_STEP, typical_seed_std
from .findings import findings, method_line
from .floor import floor_lines
from .render import Block
from .stats import BOOTSTRAP_RESAMPLES
from .text import fmt, fmt_ci, one_line, show
from .yardstick_text import yardstick_block, yardstick_legend, yardstick_sentence


def _versions() -> str:
    parts = []
    for pkg in ("ablate", "torch", "timm", "optuna", "pandas", "matplotlib"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} (not installed)")
    return ", ".join(parts)


def _schedule(r: Any) -> str:
    """The resolved recipe, schedule included, in one line."""
    if r.sched == "step":
        sched = f"step decay ×0.1 at epochs {'/'.join(f'{m:g}' for m in r.decay_milestones)}"
    else:
        sched = f"cosine to {r.min_lr:g}"
    return (f"`{r.preset}`: {r.epochs} epochs, batch {r.batch_size}, {r.opt} lr {r.learning_rate:g}, weight decay "
            f"{r.weight_decay:g}, {r.warmup_epochs:g} warmup epochs then {sched}, mixup {r.mixup:g} / cutmix "
            f"{r.cutmix:g}, RandAugment {r.randaugment or 'off'}, random erasing {r.random_erasing:g}, label "
            f"smoothing {r.label_smoothing:g}, stochastic depth {r.drop_path if r.drop_path is not None else 'net'},"
            f" EMA {r.ema if r.ema is not None else 'off'}")


@dataclass
class Tables:
    """What the analysis of a study gives its report."""

    table: pd.DataFrame  # analysis.variant_table with the change vs the baseline and a `changes` column
    baseline: str | None  # the baseline step's name (analysis.vs_baseline)
    agree: dict[str, Any] | None  # analysis.agreement (None for a search)
    curves: pd.DataFrame  # analysis.curve_table
    grid_keys: list[str]  # the swept fields of a grid ([] otherwise)
    gtable: pd.DataFrame  # the table with a column per swept field (the table itself when not a grid)
    rule: Rule = field(default_factory=Rule)  # how the study judges its changes (ablate.evidence.Rule)
    yard: pd.DataFrame = field(default_factory=pd.DataFrame)  # yardsticks.yardsticks (empty: none)
    readout: str = "top1"  # what the verdicts and the headline agreement are of (ablate.evidence.READOUTS)
    floor: dict[str, Any] | None = None  # floor.linear_floor: a linear model on the same images


def report_blocks(loaded: LoadedStudy, df: pd.DataFrame, t: Tables, notes: list[str],
                  images: list[tuple[str, str]]) -> list[Block]:
    """The report from its title to how the numbers are computed; `images` are (file, caption)."""
    s = loaded.study
    blocks: list[Block] = [
        ("h", 1, f"{s.name}: ablation report"),
        ("p", s.description or "(no description)"),
        ("h", 2, "What was run"),
        ("ul", _what_was_run(loaded, df)),
    ]
    for note in notes:
        blocks.append(("p", f"**Note:** {note}"))
    found = findings(t.table, loaded.kind, t.agree, t.rule, loaded.study.search)
    best = float(t.table["top1_mean"].max()) if len(t.table) else math.nan
    found += yardstick_sentence(t.yard, t.readout) + floor_lines(t.floor, best)
    blocks += [("h", 2, "Findings"), ("ul", found)]
    if not t.yard.empty:
        blocks += [("h", 2, "Agreement with the paper, per readout and beside its yardsticks"),
                   yardstick_block(t.yard, t.readout), ("p", yardstick_legend(t.readout))]
    blocks += [("h", 2, "Results"), result_table(t.gtable, loaded.kind, t.grid_keys)]
    blocks.append(("p", _table_legend(t.table, loaded.kind, t.rule)
                   + (f" The changes and verdicts here are of the study's readout, {READOUTS[t.readout].label} "
                      "(`evidence.readout`), not of top-1." if t.readout != "top1" else "")))
    blocks.append(("h", 2, "Charts"))
    for file, caption in images:
        blocks += [("img", file, caption), ("p", f"_{caption}_")]
    blocks += _failed_trials(df)
    blocks += [("h", 2, "How the numbers are computed"), ("ul", _method_notes(t.table, loaded.kind, t.rule))]
    return blocks


def _what_was_run(loaded: LoadedStudy, df: pd.DataFrame) -> list[str]:
    """Study file, trial counts, data, recipes, scale, seeds, devices, versions and the time."""
    s = loaded.study
    d = s.data
    status = Status.counts_line(df["status"].value_counts().to_dict(), label=True)
    devices = ", ".join(sorted({str(x) for x in df.get("device", pd.Series(dtype=str)).dropna()})) or "—"
    recipes = list(dict.fromkeys(v.recipe for v in loaded.variants)) or [s.recipe]
    recipe_lines = [_schedule(x) for x in recipes]
    data_bits = [f"`{d.dataset}`", f"{d.resolved('image_size')} px"]
    data_bits += [f"train subset {d.train_subset}"] if d.train_subset else []
    data_bits += [f"val subset {d.val_subset}"] if d.val_subset else []
    return [
        f"study file: `{loaded.file}` ({loaded.plan()})",
        f"trials: {status}",
        "data: " + ", ".join(data_bits),
        *(f"recipe{f' {i + 1} of {len(recipe_lines)}' if len(recipe_lines) > 1 else ''}: {line}"
          for i, line in enumerate(recipe_lines)),
        f"scale: width × {s.scale.width:g}, depth × {s.scale.depth:g} (GFLOPs are counted at the paper's scale: "
        f"unscaled network, {s.measure.flops_image_size} px, 3 channels, 1000 classes)",
        f"seeds: {', '.join(map(str, s.seeds))}",
        f"device: {devices}",
        f"versions: {_versions()}",
        f"generated: {time.strftime('%Y-%m-%d %H:%M')}",
    ]


def _failed_trials(df: pd.DataFrame) -> list[Block]:
    """The failed and interrupted trials with their reasons, or "None."."""
    failed = df[df["status"].isin([Status.FAILED, Status.INTERRUPTED])]
    if failed.empty:
        return [("h", 2, "Failed trials"), ("p", "None.")]
    rows = [[str(x["name"]), str(x["seed"]), str(x["status"]), str(int(x.get("attempts") or 0)),
             one_line(x.get("fail_reason"))] for _, x in failed.iterrows()]
    return [("h", 2, "Failed trials"), ("table", ["name", "seed", "status", "attempts", "reason"], rows)]


def result_table(t: pd.DataFrame, kind: str, grid_keys: list[str]) -> Block:
    vs = "Δ vs prev [corrected CI]" if kind == "steps" else "Δ vs first [corrected CI]"
    benched = "bench_infer_img_per_s" in t and bool(t["bench_infer_img_per_s"].notna().any())
    header = ["#", "name", *grid_keys, "group", "changes", "status", "params (M)", "GFLOPs",
              *BENCH_HEADER[:2 * benched], *TRAINED_HEADER, "top-1 mean [95% CI] (n)", vs, "verdict", "paper top-1",
              "paper Δ"]
    if kind == "grid":
        header.remove("group")
        header.remove("changes")  # the grid columns are the changes
    rows = []
    for _, r in t.iterrows():
        top1 = "—"
        if math.isfinite(r["top1_mean"]):
            top1 = fmt(r["top1_mean"]) + fmt_ci(r.get("top1_lo"), r.get("top1_hi")) + f" (n={r['n']})"
        delta = fmt(r["delta"], signed=True) + fmt_ci(r["delta_lo"], r["delta_hi"], signed=True)
        p = _verdict_note(r)
        ref = fmt(r["ref_top1"]) + (f" ± {fmt(r['ref_top1_std'])}" if math.isfinite(r["ref_top1_std"]) else "")
        row = [str(r["index"] + 1), str(r["name"]), *[show(r[k]) for k in grid_keys], str(r["group"]),
               str(r.get("changes") or "—"), str(r["status"]), fmt(r["params"] / 1e6), fmt(r["gflops"]),
               *_bench_cells(r)[:2 * benched], fmt(r["train_img_per_s"], 0), fmt(r["infer_img_per_s"], 0), top1, delta,
               (str(r["verdict"]) + p) if r["verdict"] else "", ref if ref != "—" else "—",
               fmt(r["ref_delta"], signed=True)]
        if kind == "grid":
            del row[2 + len(grid_keys): 4 + len(grid_keys)]
        rows.append(row)
    return ("table", header, rows)


# speed columns: measured by `ablate bench` (the design's cost on a named device), and as trained (overheard)
BENCH_HEADER = ["bench infer img/s [min–max]", "bench train img/s"]
TRAINED_HEADER = ["training img/s (as trained, shared cores)", "eval img/s (as trained)"]


def _bench_cells(r: Any) -> list[str]:
    return [fmt(r["bench_infer_img_per_s"], 1) + fmt_ci(r["bench_infer_lo"], r["bench_infer_hi"], 1),
            fmt(r["bench_train_img_per_s"], 1)]


def _verdict_note(r: Any) -> str:
    """`, p_adj=0.012` after a verdict (and the seeds an undetermined change would need)."""
    p = r.get("p_adj")
    out = f", p_adj={p:.3g}" if isinstance(p, float) and math.isfinite(p) else ""
    need = r.get("seeds_to_settle")
    if r.get("verdict") == UNDETERMINED and isinstance(need, float) and not math.isnan(need):
        out += f", needs ~{int(need)} seeds" if math.isfinite(need) else ", needs > 1000 seeds"
    return out


def _table_legend(t: pd.DataFrame, kind: str, rule: Rule) -> str:
    vs = "the previous step (reference rows are not steps)" if kind == "steps" else "the first variant"
    margin = f"`equivalent` (its interval inside ±{rule.margin:g} points), " if rule.margin else ""
    return (f"changes: every resolved network, recipe and data field that differs from {vs} (computed from the "
            f"configs, not from the names). Δ: change of mean top-1 vs {vs}, in points, with its paired t-interval "
            "over shared seeds at the level the family correction spends on it; verdict: `helped` / `hurt` (the "
            f"corrected interval excludes 0), {margin}`undetermined`, or `not judged` with one seed; p_adj: the "
            f"corrected p ({CORRECTION_NAMES[rule.correction]}). paper: ImageNet-1K top-1 from the study's "
            "`reference:` (± the paper's seed std: context only, never a verdict's basis; a proxy's accuracies are "
            "on another scale: compare changes and orderings, not levels). GFLOPs at the paper's scale. "
            + _speed_legend(t))


def _speed_legend(t: pd.DataFrame) -> str:
    bench = ""
    if "bench_infer_img_per_s" in t and t["bench_infer_img_per_s"].notna().any():
        bench = (f"bench img/s: `ablate bench`, each network alone on {t['bench_label'].iloc[0]}, median [min–max] "
                 "of interleaved repetitions: the design's speed. ")
    return (bench + "training / eval img/s (as trained): the trials' own rates (median over seeds), with other "
            "workers on the same cores and the trial engine's CPU fast paths: how fast this study ran, not what "
            "a design costs" + ("." if bench else "; `ablate bench STUDY` measures that."))


def _method_notes(t: pd.DataFrame, kind: str, rule: Rule) -> list[str]:
    sigma = typical_seed_std(t)
    paper = (f" The paper's own seed std (median {fmt(sigma)} points on ImageNet) is context, not a basis for "
             "any verdict here." if math.isfinite(sigma) else "")
    tested = t[t["verdict"].isin([*SETTLED, UNDETERMINED])] if "verdict" in t else t.iloc[0:0]
    family = (method_line(tested, rule) + ".") if len(tested) else "no change has 2 shared seeds: none is judged."
    return [
        "top-1: final-epoch validation top-1 of each finished seed; mean with a 95 % Student-t interval over "
        "seeds (scipy.stats.t).",
        "verdicts (docs/evidence.md): every change with ≥ 2 shared seeds belongs to one family, the study's "
        "judged changes; each is a paired t-test of the per-seed differences (is there an effect?)"
        + (f" and two one-sided tests against ±{rule.margin:g} points (is the effect smaller than the margin?)"
           if rule.margin else "") + ", corrected together: " + family + paper,
        "agreement: Spearman ρ (scipy.stats.spearmanr) between measured mean top-1 and paper top-1 over steps "
        "that have both (levels), and between step changes Δ and paper Δ (changes); reference rows (group "
        "`reference`) are left out. Intervals: percentile bootstrap over seeds (scipy.stats.bootstrap, "
        f"{BOOTSTRAP_RESAMPLES} resamples; the same seed resample for every step). Sign agreement is counted on "
        f"the steps whose paper change is ≥ {BIG_STEP:g} points, larger than the paper's own seed noise. "
        "With few seeds the bootstrap is coarse (3 seeds have only 10 distinct resamples), so its interval can "
        "be narrow or sit at the point estimate: read it as a lower bound on the uncertainty.",
        "Pareto front: variants no other variant beats on both top-1 and cost (GFLOPs lower / throughput higher).",
    ]
