"""`ablate compare`: several studies side by side — e.g. one roadmap under proxies of different budgets —
each with its agreement with the paper (rho with bootstrap intervals, big-step sign agreement) and its cost.

Steps are matched by name across studies; a step one study has and another lacks is listed, not dropped.
Everything is read from the studies' ledgers (read-only); the only files written are
reports/compare-<name>/{compare.md, compare.html, compare.png, compare.svg, compare.csv}.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.lines import Line2D

from ablate.config.errors import StudyError
from ablate.config.variant import LoadedStudy
from ablate.evidence import Rule, agreement
from ablate.files import atomic_write, atomic_write_text
from ablate.sweep.states import Status

from . import analysis as A
from .reading import read_metrics, read_results
from .readouts import with_train_loss_sum
from .render import PLAIN_TEXT, Block, save_figure, to_html, to_markdown
from .style import PALETTE, figure, plain_axes
from .text import fmt, fmt_ci, fmt_rho, slug
from .yardstick_text import summary_columns, yardstick_block, yardstick_legend
from .yardsticks import yardsticks

# Images in the full training split, for the cost of a study that trains on all of it.
TRAIN_IMAGES = {"fashion-mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "imagefolder": 1_281_167}


@dataclass
class StudyResult:
    """One study's per-step table, agreement with the paper and cost."""

    loaded: LoadedStudy
    table: pd.DataFrame
    agree: dict[str, Any]
    cost: dict[str, float]
    yard: pd.DataFrame  # yardsticks.yardsticks: every readout's agreement and the yardsticks'


def study_cost(loaded: LoadedStudy, df: pd.DataFrame) -> dict[str, float]:
    """What the finished trials cost: trained images (train-set size x epochs run), trial-seconds (the sum of
    the trials' wall time: CPU- or GPU-seconds of one device each) and wall time from the first trial's start
    to the last one's end when the ledger knows it."""
    done = df[df["status"] == Status.DONE]
    by_id = {v.id: v for v in loaded.variants}
    images = 0.0
    for _, r in done.iterrows():
        v = by_id.get(r["id"])
        n = (v.data.train_subset or TRAIN_IMAGES.get(v.data.dataset, math.nan)) if v else math.nan
        images += n * float(pd.to_numeric(r.get("epochs"), errors="coerce") or 0)
    seconds = float(pd.to_numeric(done.get("wall_seconds"), errors="coerce").sum()) if len(done) else 0.0
    start = pd.to_datetime(done.get("started"), errors="coerce") if "started" in done else None
    end = pd.to_datetime(done.get("finished"), errors="coerce") if "finished" in done else None
    wall = (end.max() - start.min()).total_seconds() if start is not None and end is not None and len(done) \
        and start.notna().any() and end.notna().any() else math.nan
    return {"trials_done": float(len(done)), "trials": float(len(df)), "train_images": images,
            "trial_seconds": seconds, "wall_seconds": wall}


def read_study(loaded: LoadedStudy, results_dir: Path, storage: str | None = None) -> StudyResult:
    study_dir = Path(results_dir) / loaded.name
    df, _notes = read_results(loaded, study_dir, storage)
    if not (df["status"] == Status.DONE).any():
        raise StudyError(loaded.file, "results", f"no finished trial yet: run `ablate run {loaded.file}` first")
    df = with_train_loss_sum(df, read_metrics(study_dir, df))
    readout = loaded.study.evidence.readout
    table = A.variant_table(df, loaded.kind, Rule.of(loaded.study), readout)
    table, _ = A.vs_baseline(table, df)
    return StudyResult(loaded, table, A.agreement(table, df, loaded.kind, readout), study_cost(loaded, df),
                       yardsticks(table, df, loaded.kind))


def step_table(results: list[StudyResult]) -> tuple[pd.DataFrame, list[str]]:
    """One row per step name (in the order of first appearance): the paper's top-1 and change, and per study
    its mean top-1 with the 95 % interval, its change vs the previous step with the paired interval, and the
    verdict. Returns the table and notes on steps not shared by every study."""
    names: list[str] = []
    for r in results:
        names += [n for n in r.table["name"] if n not in names]
    rows = []
    for name in names:
        row: dict[str, Any] = {"step": name}
        for r in results:
            hit = r.table[r.table["name"] == name]
            tag = r.loaded.name
            if hit.empty:
                row.update({f"{tag}:top1": math.nan, f"{tag}:lo": math.nan, f"{tag}:hi": math.nan,
                            f"{tag}:delta": math.nan, f"{tag}:dlo": math.nan, f"{tag}:dhi": math.nan,
                            f"{tag}:verdict": "(no such step)"})
                continue
            h = hit.iloc[0]
            row.setdefault("paper top1", h["ref_top1"])
            row.setdefault("paper delta", h["ref_delta"])
            row.update({f"{tag}:top1": h["top1_mean"], f"{tag}:lo": h["top1_lo"], f"{tag}:hi": h["top1_hi"],
                        f"{tag}:delta": h["delta"], f"{tag}:dlo": h["delta_lo"], f"{tag}:dhi": h["delta_hi"],
                        f"{tag}:verdict": h["verdict"]})
        tags = [r.loaded.name for r in results]
        row["agreement"] = agreement([row.get(f"{t}:verdict", "") for t in tags],
                                     [(row.get(f"{t}:dlo", math.nan), row.get(f"{t}:dhi", math.nan)) for t in tags])
        rows.append(row)
    notes = []
    for r in results:
        missing = [n for n in names if n not in set(r.table["name"])]
        if missing:
            notes.append(f"`{r.loaded.name}` has no step named: {', '.join(missing)}.")
    return pd.DataFrame(rows), notes


def summary_table(results: list[StudyResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        a, c, s = r.agree, r.cost, r.loaded.study
        rows.append({
            "study": r.loaded.name, "file": r.loaded.file, "seeds": a["seeds"] or int(r.table["n"].max()),
            "steps": a["n_levels"], "rho_levels": a["rho_levels"], "rho_levels_lo": a["rho_levels_ci"][0],
            "rho_levels_hi": a["rho_levels_ci"][1], "rho_changes": a["rho_deltas"],
            "rho_changes_lo": a["rho_deltas_ci"][0], "rho_changes_hi": a["rho_deltas_ci"][1],
            "big_same_sign": a["big_same"], "big_steps": a["big_n"], "big_same_settled": a["big_same_settled"],
            "image_size": s.data.resolved("image_size"), "train_subset": s.data.train_subset,
            "epochs": s.recipe.epochs, "width": s.scale.width, "depth": s.scale.depth,
            "trials_done": int(c["trials_done"]), "trials": int(c["trials"]), "train_images": c["train_images"],
            "trial_seconds": c["trial_seconds"], "wall_seconds": c["wall_seconds"],
            **summary_columns(r.yard, str(a.get("readout", "top1"))),
        })
    return pd.DataFrame(rows)


def agreement_chart(summary: pd.DataFrame, title: str) -> Any:
    """Agreement with the paper (Spearman rho of levels and of changes, 95 % bootstrap whiskers) against the
    study's cost in trial-seconds (log axis), one point per study."""
    fig = figure(7.2, 4.4)
    ax = fig.add_axes((0.1, 0.13, 0.62, 0.74))
    ax.set_xscale("log")
    for k, r in summary.reset_index(drop=True).iterrows():
        x = r["trial_seconds"] if r["trial_seconds"] > 0 else math.nan
        color = PALETTE[k % len(PALETTE)]
        for key, marker, dx in (("rho_levels", "o", 0.97), ("rho_changes", "s", 1.03)):
            y, lo, hi = r[key], r[f"{key}_lo"], r[f"{key}_hi"]
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            err = [[y - lo], [hi - y]] if math.isfinite(lo) and math.isfinite(hi) else None
            ax.errorbar(x * dx, y, yerr=err, fmt=marker, color=color, ms=6, capsize=3,
                        mfc=color if marker == "o" else "white")
        ax.annotate(str(r["study"]), (x, r["rho_levels"]) if math.isfinite(r["rho_levels"]) else (x, 0),
                    textcoords="offset points", xytext=(7, 5), fontsize=7.5, color=color)
    ax.axhline(0, color="#555", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("cost: trial-seconds (sum of the trials' wall time, log scale)", fontsize=9)
    ax.set_ylabel("Spearman ρ with the paper", fontsize=9)
    plain_axes(ax)
    ax.legend(handles=[Line2D([], [], marker="o", ls="", color="#444", label="ρ of step levels"),
                       Line2D([], [], marker="s", ls="", color="#444", mfc="white", label="ρ of step changes")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, frameon=False)
    fig.text(0.01, 0.97, title, fontsize=10.5, fontweight="bold", va="top")
    fig.text(0.01, 0.925, "whiskers: 95 % bootstrap interval over seeds (none with 1 seed)", fontsize=7.5,
             color="#444", va="top")
    return fig


def _rho_cell(r: pd.Series, key: str) -> str:
    ci = (r[f"{key}_lo"], r[f"{key}_hi"])
    return fmt_rho(r[key], ci, int(r["seeds"]) if math.isfinite(ci[0]) else 1)


def write_compare(loaded: list[LoadedStudy], results_dir: Path, reports_dir: Path, name: str | None = None,
                  storage: str | None = None) -> list[Path]:
    """Read every study (all must have finished trials: else StudyError before anything is written), then
    write reports/compare-<name>/."""
    results = [read_study(s, results_dir, storage) for s in loaded]  # raises before anything is written
    name = slug(name or "-".join(s.name for s in loaded))[:100]
    out = Path(reports_dir) / f"compare-{name}"
    summary = summary_table(results)
    steps, notes = step_table(results)
    out.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(PLAIN_TEXT):
        fig = agreement_chart(summary, f"{name}: agreement with the paper vs cost")
        save_figure(fig, out / "compare.png", dpi=130)
        save_figure(fig, out / "compare.svg")
    atomic_write(out / "compare.csv", lambda tmp: summary.to_csv(tmp, index=False, float_format="%.4f"))
    yards = [r.yard.assign(study=r.loaded.name) for r in results if not r.yard.empty]
    if yards:
        long = pd.concat(yards, ignore_index=True)
        long = long[["study", *[c for c in long.columns if c != "study"]]]
        atomic_write(out / "compare-agreement.csv", lambda tmp: long.to_csv(tmp, index=False, float_format="%.4f"))
    atomic_write(out / "compare-steps.csv", lambda tmp: steps.to_csv(tmp, index=False, float_format="%.4f"))
    tags = [s.name for s in loaded]
    blocks: list[Block] = [("h", 1, f"Comparison: {', '.join(tags)}"),
                           ("p", f"generated {time.strftime('%Y-%m-%d %H:%M')}; steps matched by name.")]
    blocks += [("h", 2, "Agreement with the paper and cost"), _summary_block(summary),
               ("img", "compare.png", "agreement vs cost"), ("p", "_Agreement with the paper against cost._")]
    blocks += _yardstick_blocks(results)
    blocks += [("h", 2, "Per step"), _steps_block(steps, tags), ("p", _agreement_line(steps))]
    if notes:
        blocks += [("h", 2, "Steps not shared by every study"), ("ul", notes)]
    blocks += [("h", 2, "How to read this"), ("ul", _HOW_TO_READ)]
    atomic_write_text(out / "compare.md", to_markdown(blocks))
    atomic_write_text(out / "compare.html", to_html(blocks, out, f"compare {name} — ablate"))
    return [out / f for f in ("compare.md", "compare.html", "compare.png", "compare.svg", "compare.csv",
                              "compare-steps.csv", *(["compare-agreement.csv"] if yards else []))]


def _yardstick_blocks(results: list[StudyResult]) -> list[Block]:
    """Per study, every readout's agreement beside the yardsticks (yardstick_text.yardstick_block)."""
    shown = [r for r in results if not r.yard.empty]
    if not shown:
        return []
    readout = str(shown[0].agree.get("readout", "top1"))
    blocks: list[Block] = [("h", 2, "Agreement per readout, beside the yardsticks")]
    for r in shown:
        blocks += [("h", 3, r.loaded.name), yardstick_block(r.yard, str(r.agree.get("readout", "top1")))]
    return blocks + [("p", yardstick_legend(readout))]


def _agreement_line(steps: pd.DataFrame) -> str:
    """How many steps' verdicts agree across the studies (the `agreement` column)."""
    counts = steps["agreement"].value_counts() if "agreement" in steps else pd.Series(dtype=int)
    words = ("same", "compatible", "contradictory")
    return ("Verdicts across the studies (agreement): " + ", ".join(f"{int(counts.get(w, 0))} {w}" for w in words)
            + ". `contradictory`: settled in ways no single effect size satisfies (helped vs hurt, or an effect and "
            "an equivalence whose corrected intervals do not overlap); `compatible`: one settled and another "
            "undetermined or not judged, or an effect and an equivalence whose intervals share values.")


def _summary_block(summary: pd.DataFrame) -> Block:
    """One row per study: agreement with the paper, the proxy's settings and its cost."""
    head = ["study", "seeds", "steps", "ρ levels [95% CI]", "ρ changes [95% CI]", "paper's sign (|paper Δ| ≥ 0.4)",
            "image px", "train images", "epochs", "width × depth", "trials", "trained images", "trial-seconds",
            "wall (s)"]
    rows = [[str(r["study"]), str(r["seeds"]), str(r["steps"]), _rho_cell(r, "rho_levels"),
             _rho_cell(r, "rho_changes"), f"{r['big_same_sign']} of {r['big_steps']} ({r['big_same_settled']} settled)",
             str(r["image_size"]), str(r["train_subset"] or "all"), str(r["epochs"]),
             f"{r['width']:g} × {r['depth']:g}",
             f"{r['trials_done']}/{r['trials']}", f"{r['train_images']:,.0f}", fmt(r["trial_seconds"], 0),
             fmt(r["wall_seconds"], 0)] for _, r in summary.iterrows()]
    return ("table", head, rows)


def _steps_block(steps: pd.DataFrame, tags: list[str]) -> Block:
    """One row per step: the paper's top-1 and change, then each study's top-1 and change with intervals."""
    head = ["step", "paper top-1", "paper Δ"] + [f"{t}: top-1 [95% CI]" for t in tags] + \
        [f"{t}: Δ [corrected CI]" for t in tags] + (["agreement"] if len(tags) > 1 else [])
    rows = []
    for _, r in steps.iterrows():
        cells = [str(r["step"]), fmt(r.get("paper top1")), fmt(r.get("paper delta"), signed=True)]
        cells += [fmt(r[f"{t}:top1"]) + fmt_ci(r[f"{t}:lo"], r[f"{t}:hi"]) for t in tags]
        cells += [(fmt(r[f"{t}:delta"], signed=True) + fmt_ci(r[f"{t}:dlo"], r[f"{t}:dhi"], signed=True)
                   + (f" ({r[f'{t}:verdict']})" if r[f"{t}:verdict"] else "")) for t in tags]
        cells += [str(r["agreement"]) or "—"] if len(tags) > 1 else []
        rows.append(cells)
    return ("table", head, rows)


_HOW_TO_READ = [
    "ρ: Spearman rank correlation with the paper's ImageNet top-1 over the steps, of the levels and of the "
    "step-to-step changes; 95 % percentile-bootstrap interval over each study's shared seeds.",
    f"paper's sign: of the steps whose paper change is ≥ {A.BIG_STEP:g} points (beyond the paper's own seed "
    "noise), how many changes have the paper's sign here, and how many of those each study settled as helped "
    "or hurt (its own corrected verdict).",
    "yardsticks: the same figures for predictors that train nothing (the GFLOPs and parameter columns, the "
    "step index) and, for a roadmap of one of the paper's regimes, the other regime (the ceiling); 'minus': the "
    "proxy's figure minus the yardstick's, with a bootstrap interval over seeds and steps together "
    "(compare-agreement.csv: every readout; compare.csv: the verdicts' readout).",
    "cost: trained images = train-set size × epochs over finished trials; trial-seconds = sum of the trials' "
    "wall time (one device each); wall = first trial start to last trial end.",
]
