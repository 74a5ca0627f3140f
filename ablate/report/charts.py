"""Charts of a study: each function takes tables from analysis.py and returns a matplotlib Figure.

Nothing here saves or shows a figure (writer.py does). The roadmap chart is in roadmap.py (re-exported
here), what the charts share in style.py.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ablate.sweep.states import PARTIAL, Status

from .roadmap import roadmap_chart
from .stats import pareto_mask
from .style import PALETTE, figure, group_colors, plain_axes, put_title, state_label
from .text import fmt, show

__all__ = ["curves_chart", "grid_field_chart", "grid_heatmap", "roadmap_chart", "search_charts", "tradeoff_caption",
           "tradeoff_chart", "tradeoff_panels"]


# ---------------------------------------------------------------- trade-offs


def _place_labels(ax: Any, xs: np.ndarray, ys: np.ndarray, labels: list[str], errs: np.ndarray | None = None,
                  path: tuple[np.ndarray, np.ndarray] | None = None, fontsize: float = 7.5) -> None:
    """Greedy label placement: for each point try offsets around it (nearest first) and keep the first
    whose box overlaps no placed label, point, error bar or the `path` polyline (data coordinates); else the
    least-overlapping one. Labels placed away from their point get a leader line."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_disp = ax.transData.transform
    pts = to_disp(np.column_stack([xs, ys]))
    placed: list[tuple[float, float, float, float]] = []
    r = 10.0  # radius of a (circled) point in pixels
    obstacles = [(px - r, py - r, px + r, py + r) for px, py in pts]
    if errs is not None:
        lo, hi = to_disp(np.column_stack([xs, ys - errs])), to_disp(np.column_stack([xs, ys + errs]))
        obstacles += [(a[0] - 2, a[1], a[0] + 2, b[1]) for a, b in zip(lo, hi, strict=True) if b[1] > a[1]]
    if path is not None and len(path[0]) > 1:
        line = to_disp(np.column_stack(path))
        for (x0, y0), (x1, y1) in zip(line[:-1], line[1:], strict=True):
            obstacles.append((min(x0, x1) - 1.5, min(y0, y1) - 1.5, max(x0, x1) + 1.5, max(y0, y1) + 1.5))
    frame = ax.get_window_extent(renderer)
    offsets = [(dx, dy) for dist in (12, 20, 30, 42, 56) for dx, dy in
               ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
               for dx, dy in [(dx * dist, dy * dist)]]
    order = np.argsort(-pts[:, 1])
    for i in order:
        t = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(0, 0), textcoords="offset pixels", fontsize=fontsize,
                        ha="left", va="bottom")
        bb = t.get_window_extent(renderer)
        w, h = bb.width, bb.height
        best, best_cost = None, math.inf
        for dx, dy in offsets:
            x0 = pts[i, 0] + dx - (w if dx < 0 else 0 if dx > 0 else w / 2)
            y0 = pts[i, 1] + dy - (h if dy < 0 else 0 if dy > 0 else h / 2)
            box = (x0, y0, x0 + w, y0 + h)
            cost = sum(_overlap(box, p) for p in placed)
            cost += sum(_overlap(box, o) for o in obstacles)
            if box[0] < frame.x0 or box[2] > frame.x1 or box[1] < frame.y0 or box[3] > frame.y1:
                cost += w * h
            if cost < best_cost:
                best, best_cost = (dx, dy, box), cost
            if cost == 0:
                break
        dx, dy, box = best if best is not None else (0, 0, (pts[i, 0], pts[i, 1], pts[i, 0] + w, pts[i, 1] + h))
        t.set_position((box[0] - pts[i, 0], box[1] - pts[i, 1]))
        if abs(dx) > 20 or abs(dy) > 20:
            ax.annotate("", (xs[i], ys[i]), xytext=((box[0] + box[2]) / 2 - pts[i, 0], (box[1] + box[3]) / 2
                                                     - pts[i, 1]),
                        textcoords="offset pixels", arrowprops={"arrowstyle": "-", "color": "#999", "lw": 0.5})
        placed.append(box)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def tradeoff_chart(table: pd.DataFrame, dataset: str, title: str) -> Figure:
    """Top-1 vs GFLOPs (paper scale) and top-1 vs speed (`tradeoff_panels`), Pareto fronts marked.

    Points are labelled with the variant's name when there are at most 10, else with its row number
    (the `#` column of the report's table) and a key beside the chart. Variants without a result are left
    out and counted in the caption.
    """
    t = table[table["top1_mean"].notna()].reset_index(drop=True)
    many = len(table) > 10
    labels = [str(r["index"] + 1) if many else str(r["name"]) for _, r in t.iterrows()]
    colors = group_colors([str(g) for g in table["group"]])
    key_w = (max(len(s) for s in table["name"]) * 0.06 + 0.5) if many else 0.0
    fig = figure(10.5 + key_w, 4.6)
    left = 0.06
    pw = (1 - left - key_w / (10.5 + key_w) - 0.08) / 2
    for k, (col, xlabel, lower, note) in enumerate(tradeoff_panels(table)):
        ax = fig.add_axes((left + k * (pw + 0.07), 0.14, pw, 0.72))
        plain_axes(ax)
        ax.set_xlabel(xlabel, fontsize=9 if len(xlabel) < 70 else 7.5)
        ax.set_ylabel(f"top-1 on {dataset} (%)", fontsize=9)
        _tradeoff_panel(ax, t, col, lower, labels, colors, note)
    handles = [Patch(color=c, label=g or "(no group)") for g, c in colors.items()]
    fig.legend(handles=handles, loc="upper right", ncol=min(len(handles), 7), fontsize=7.5, frameon=False,
               bbox_to_anchor=(1 - key_w / (10.5 + key_w), 1.0))
    missing = int(table["top1_mean"].isna().sum())
    put_title(fig, title, y=0.975)
    if missing:
        fig.text(0.01, 0.02, f"{missing} variant(s) without a result are not shown", fontsize=8, color="#777")
    if many:
        key = "\n".join(f"{int(r['index']) + 1:>2}  {r['name']}" for _, r in table.iterrows())
        fig.text(1 - key_w / (10.5 + key_w) + 0.005, 0.86, key, fontsize=7, va="top", family="monospace")
    return fig


_GFLOPS_PANEL = ("gflops", "GFLOPs at paper scale (fvcore, 1 multiply-add = 1 FLOP)", True,
                 "lower cost, higher top-1 is better")


def _benched(table: pd.DataFrame) -> bool:
    col = table.get("bench_infer_img_per_s")
    return col is not None and bool(pd.to_numeric(col, errors="coerce").notna().any())


def tradeoff_panels(table: pd.DataFrame) -> list[tuple[str, str, bool, str]]:
    """(column, x label, whether lower is better, panel title) of the trade-off chart's panels: GFLOPs, and the
    speed `ablate bench` measured (labelled with its device, precision, batch and size) when the study was
    benched; otherwise the training rate, labelled as what it is (not the design's speed)."""
    if _benched(table):
        label = str(table["bench_label"].iloc[0])
        return [_GFLOPS_PANEL, ("bench_infer_img_per_s", f"inference images/s (ablate bench: {label})", False,
                                "faster, higher top-1 is better")]
    return [_GFLOPS_PANEL, ("train_img_per_s", "training images/s as trained (shared cores, trial engine's fast "
                            "paths): not the design's speed", False, "training rate, not a design cost: run "
                            "`ablate bench` for speed")]


def _bench_range(t: pd.DataFrame, x: np.ndarray) -> np.ndarray:
    """(2, n) distances from each bench figure to its min and max over the repetitions (x error bars)."""
    lo, hi = (pd.to_numeric(t[c], errors="coerce").to_numpy(float) for c in ("bench_infer_lo", "bench_infer_hi"))
    return np.vstack([np.clip(x - lo, 0, None), np.clip(hi - x, 0, None)])


def tradeoff_caption(table: pd.DataFrame) -> str:
    """The chart's caption in the report: which speed the right panel shows."""
    if _benched(table):
        return ("Top-1 vs GFLOPs (paper scale) and vs inference throughput measured by `ablate bench` on "
                f"{table['bench_label'].iloc[0]} (horizontal bars: min–max over its interleaved repetitions); "
                "circled points form the Pareto front.")
    return ("Top-1 vs GFLOPs (paper scale) and vs the training rate as trained (shared cores, the trial engine's "
            "CPU fast paths): that rate is not the design's speed; `ablate bench STUDY` measures it and this "
            "chart then uses it. Circled points form the Pareto front.")


def _tradeoff_panel(ax: Any, t: pd.DataFrame, col: str, lower: bool, labels: list[str],
                    colors: dict[str, str], note: str) -> None:
    """One panel of the trade-off chart: the finished variants' top-1 (95 % whiskers) against `col`, the
    Pareto front circled and bounded by its staircase, points labelled."""
    x = pd.to_numeric(t[col], errors="coerce").to_numpy(float) if len(t) else np.array([])
    yv = t["top1_mean"].to_numpy(float) if len(t) else np.array([])
    ok = np.isfinite(x) & np.isfinite(yv)
    if not ok.any():
        ax.text(0.5, 0.5, "no finished variant with this measurement", transform=ax.transAxes, ha="center",
                fontsize=9, color="#777")
        return
    err = np.nan_to_num(t["top1_hi"].to_numpy(float) - yv) if "top1_hi" in t else np.zeros(len(t))  # 95 % CI
    xerr = _bench_range(t, x) if col == "bench_infer_img_per_s" else np.full((2, len(t)), np.nan)
    for i in np.flatnonzero(ok):
        ax.errorbar(x[i], yv[i], yerr=err[i] if err[i] else None, fmt="o", ms=5.5,
                    xerr=xerr[:, i:i + 1] if np.isfinite(xerr[:, i]).all() else None,
                    color=colors[str(t.loc[i, "group"])], ecolor="#555", elinewidth=0.8, capsize=2, zorder=3)
    fi = np.flatnonzero(pareto_mask(x, yv, lower_cost_is_better=lower))
    fi = fi[np.argsort(x[fi])]
    # the staircase bounding the dominated region: horizontal first when cost is lower-better
    sx = np.repeat(x[fi], 2)[1:] if lower else np.repeat(x[fi], 2)[:-1]
    sy = np.repeat(yv[fi], 2)[:-1] if lower else np.repeat(yv[fi], 2)[1:]
    ax.plot(sx, sy, "-", color="#222", lw=1, zorder=2)
    ax.scatter(x[fi], yv[fi], s=110, facecolors="none", edgecolors="#222", lw=1.1, zorder=4)
    xr = np.ptp(x[ok]) or max(abs(float(x[ok][0])) * 0.1, 1.0)
    yr = np.ptp(yv[ok]) or 1.0
    ax.set_xlim(float(x[ok].min()) - 0.12 * xr, float(x[ok].max()) + 0.12 * xr)
    ax.set_ylim(float((yv - err)[ok].min()) - 0.15 * yr, float((yv + err)[ok].max()) + 0.15 * yr)
    ax.set_title(note + "; circled: Pareto front", fontsize=8.5, color="#444")
    _place_labels(ax, x[ok], yv[ok], [labels[i] for i in np.flatnonzero(ok)], err[ok], (sx, sy))


# ---------------------------------------------------------------- curves

CURVE_COLS = 6  # small multiples per row


def curves_chart(curves: pd.DataFrame, title: str, dataset: str) -> Figure:
    """Validation top-1 and training loss per epoch as small multiples: one panel per variant (mean over its
    seeds) drawn over every other variant in light grey, so that 17 steps stay told apart (one colour map for 17
    lines is not). Top-1 panels first, then the loss panels, each set on one shared scale. Unfinished variants
    (running, failed, interrupted) are dashed and say so in their panel's title."""
    ids = list(dict.fromkeys(curves["id"])) if len(curves) else []
    n = max(len(ids), 1)
    cols = min(n, CURVE_COLS)
    rows = math.ceil(n / cols)
    fig = figure(max(2.1 * cols + 0.6, 5.5), 2 * rows * 1.55 + 1.9)
    metrics = [("top1", f"validation top-1 on {dataset} (%)"), ("train_loss", "training loss")]
    top, head = 1 - 0.8 / fig.get_figheight(), 0.3 / fig.get_figheight()
    height = (top - 0.25 / fig.get_figheight() - 2 * head) / (2 * rows)
    for m, (col, label) in enumerate(metrics):
        have = col in curves and len(curves)
        lim = _curve_limits(curves[col]) if have else None
        block = top - m * (rows * height + head)
        fig.text(0.01, block, label, fontsize=9.5, fontweight="bold", va="top")
        for k in range(n):
            r, c = divmod(k, cols)
            y0 = block - head - (r + 1) * height
            ax = fig.add_axes((0.05 + c * 0.93 / cols, y0 + 0.32 * height, 0.93 / cols - 0.035, 0.56 * height))
            plain_axes(ax)
            ax.tick_params(labelsize=6.5)
            if not have or k >= len(ids):
                ax.text(0.5, 0.5, "no per-epoch metrics yet", transform=ax.transAxes, ha="center", fontsize=7,
                        color="#777")
                continue
            _curve_panel(ax, curves, ids, ids[k], col, lim)
    put_title(fig, title)
    import textwrap

    note = "each panel: one variant (mean over its seeds; dashed: not finished) over all the others in grey; x: epoch"
    fig.text(0.01, 1 - 0.45 / fig.get_figheight(), textwrap.fill(note, int(fig.get_figwidth() * 13)), fontsize=8,
             color="#444", va="top")
    return fig


def _curve_limits(values: pd.Series) -> tuple[float, float] | None:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return None
    lo, hi = float(v.min()), float(v.max())
    pad = 0.05 * (hi - lo) or 0.5
    return lo - pad, hi + pad


def _curve_panel(ax: Any, curves: pd.DataFrame, ids: list[str], vid: str, col: str,
                 lim: tuple[float, float] | None) -> None:
    """One small multiple: every variant's curve in grey, this one's on top in colour."""
    for other in ids:
        if other != vid:
            o = curves[curves["id"] == other]
            ax.plot(o["epoch"], o[col], "-", color="#d5d5d5", lw=0.8, zorder=1)
    c = curves[curves["id"] == vid]
    state = str(c["state"].iloc[0])
    done = state in (Status.DONE, PARTIAL)
    ax.plot(c["epoch"], c[col], "-" if done else "--", color=PALETTE[0], lw=1.6, marker="o", ms=2.5, zorder=3)
    name = str(c["name"].iloc[0])
    text = f"{int(c['index'].iloc[0]) + 1}  {name if len(name) <= 30 else name[:29] + '…'}"
    ax.set_title(text + ("" if done else f" ({state_label(state)})"), fontsize=7.5, loc="left", pad=3)
    if lim is not None:
        ax.set_ylim(*lim)
    ax.xaxis.get_major_locator().set_params(integer=True)


# ---------------------------------------------------------------- grids


def grid_field_chart(effect: pd.DataFrame, key: str, dataset: str, title: str) -> Figure:
    """Top-1 against the values of one swept field (in sweep order), one line per combination of the
    other swept fields; error bars = 95 % t-interval over seeds; unfinished values are marked on the axis."""
    values = list(dict.fromkeys(effect["value"]))
    fig = figure(max(5.5, 0.8 * len(values) + 2.5), 4.2)
    ax = fig.add_axes((0.13, 0.14, 0.6 if effect["series"].nunique() > 1 else 0.82, 0.72))
    plain_axes(ax)
    xs = {v: i for i, v in enumerate(values)}
    missing: list[tuple[int, int, str]] = []  # (series number, x, state)
    for k, (series, g) in enumerate(effect.groupby("series", sort=False)):
        x = np.array([xs[v] for v in g["value"]], dtype=float)
        y = g["top1_mean"].to_numpy(float)  # NaN breaks the line: no segment is drawn across a missing value
        e = np.nan_to_num(g["top1_hi"].to_numpy(float) - y) if "top1_hi" in g else np.zeros(len(g))
        ax.errorbar(x, y, yerr=np.where(e > 0, e, np.nan) if (e > 0).any() else None, fmt="-o", ms=5, capsize=3,
                    color=PALETTE[k % len(PALETTE)], label=series or None)
        missing += [(k, int(xi), str(st)) for xi, yi, st in zip(x, y, g["state"], strict=True) if not np.isfinite(yi)]
    ymin = ax.get_ylim()[0]
    for k, xi, state in missing:
        color = PALETTE[k % len(PALETTE)]
        ax.plot(xi, ymin, "x", color=color, ms=8, mew=1.5, clip_on=False)
        ax.annotate(state_label(state), (xi, ymin), xytext=(0, 7 + 10 * k), textcoords="offset points",
                    ha="center", fontsize=7, color=color)
    ax.set_xticks(range(len(values)), values, fontsize=8)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(key, fontsize=9)
    ax.set_ylabel(f"top-1 on {dataset} (%)", fontsize=9)
    if effect["series"].nunique() > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7.5, frameon=False)
    put_title(fig, title)
    return fig


def grid_heatmap(table: pd.DataFrame, keys: tuple[str, str], dataset: str, title: str) -> Figure:
    """Mean top-1 for two swept fields; empty cells say why (failed, not run)."""
    rows = list(dict.fromkeys(table[keys[0]].map(show)))
    cols = list(dict.fromkeys(table[keys[1]].map(show)))
    z = np.full((len(rows), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in rows]
    for _, r in table.iterrows():
        i, j = rows.index(show(r[keys[0]])), cols.index(show(r[keys[1]]))
        z[i, j] = r["top1_mean"]
        text[i][j] = (fmt(r["top1_mean"]) + (f"\n±{fmt(r['top1_std'])}" if r["n"] >= 2 else "")
                      if math.isfinite(r["top1_mean"]) else state_label(r["state"]))
    fig = figure(max(4.5, 0.9 * len(cols) + 2.2), max(3.5, 0.6 * len(rows) + 1.6))
    ax = fig.add_axes((0.2, 0.15, 0.62, 0.7))
    im = ax.imshow(np.ma.masked_invalid(z), cmap="viridis", aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            dark = np.isfinite(z[i, j]) and z[i, j] < np.nanmean(z)
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7.5, color="white" if dark else "#222")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(keys[1], fontsize=9)
    ax.set_ylabel(keys[0], fontsize=9)
    cb = fig.colorbar(im, ax=ax, fraction=0.05)
    cb.set_label(f"top-1 on {dataset} (%)", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    put_title(fig, title)
    return fig


# ---------------------------------------------------------------- searches


def search_charts(optuna_study: Any) -> dict[str, Figure]:
    """optuna's own optimization history and parameter importances (optuna.visualization.matplotlib).
    Importances need >= 2 finished trials with a varying parameter; otherwise that chart is left out."""
    import warnings

    from optuna.visualization import matplotlib as ovm

    out: dict[str, Figure] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        out["search_history"] = ovm.plot_optimization_history(optuna_study).figure
        with contextlib.suppress(ValueError, RuntimeError):
            out["search_importance"] = ovm.plot_param_importances(optuna_study).figure
    return out
