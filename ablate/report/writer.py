"""The one writer of reports/<study>/: reads results/<study>/ (reading.py), runs the analysis, saves the
charts and writes report.md, report.html (one self-contained file: images embedded as data: URIs) and
results.tex (content.py builds the blocks, render.py renders them; latex.py writes results.tex).

A report is built from the ledger (read-only; results.csv is only an export): a study still running, or
with failed trials, gets a report in which those rows are shown as such (never dropped).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.config.variant import LoadedStudy, changes_text
from ablate.evidence import Rule
from ablate.files import atomic_write_text

from . import analysis as A
from .bench import with_bench
from .content import Tables, report_blocks
from .floor import linear_floor
from .latex import results_tex
from .reading import grid_values, read_metrics, read_results
from .readouts import with_train_loss_sum
from .render import PLAIN_TEXT, save_figure, to_html, to_markdown
from .text import slug
from .yardsticks import yardsticks


def write_report(loaded: LoadedStudy, results_dir: Path, reports_dir: Path, storage: str | None = None,
                 draw: bool = True) -> list[Path]:
    """Build reports_dir/<study>/ from results_dir/<study>/; return the files written.

    results_dir and reports_dir are the roots (`results`, `reports`). `storage` is the optuna storage of
    the ledger; it is only read for a search study's history (default: results/<study>/ledger.journal).
    `draw=False` writes the tables without charts (most of a report's time is matplotlib's drawing).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    t0 = time.perf_counter()
    study_dir = Path(results_dir) / loaded.name
    out = Path(reports_dir) / loaded.name
    df, notes = read_results(loaded, study_dir, storage)
    tables = analyse(loaded, df, study_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables.floor = linear_floor(loaded.study, out)
    charts = _Charts(out)
    with matplotlib.rc_context(PLAIN_TEXT):
        if draw:
            _draw_charts(loaded, tables, charts)
        if draw and getattr(loaded.study, "search", None):
            notes += _draw_search_charts(loaded, charts, storage, study_dir)
    return charts.written + _write_documents(loaded, df, tables, notes, charts.images, out, t0)


def analyse(loaded: LoadedStudy, df: pd.DataFrame, study_dir: Path) -> Tables:
    """The tables a report shows, from the study's trials `df` (reading.read_results) and its metrics."""
    kind = loaded.kind
    rule = Rule.of(loaded.study)
    readout = loaded.study.evidence.readout
    metrics = read_metrics(study_dir, df)
    df = with_train_loss_sum(df, metrics)
    table = A.variant_table(df, kind, rule, readout)
    table, baseline = A.vs_baseline(table, df)
    table = with_bench(table, study_dir)  # `ablate bench` figures, where the study was benched
    table["changes"] = table["id"].map({v.id: changes_text(v.changes, limit=4) for v in loaded.variants})
    agree = A.agreement(table, df, kind, readout) if kind != "search" else None
    yard = yardsticks(table, df, kind) if kind != "search" else pd.DataFrame()
    if agree is not None and not yard.empty and "gflops" in set(yard["name"]):
        agree["gflops"] = yard[yard["name"] == "gflops"].iloc[0].to_dict()
    curves = A.curve_table(metrics, table)
    grid_keys = list(loaded.study.grid) if kind == "grid" else []
    gtable = A.grid_table(table, grid_values(loaded)) if grid_keys else table
    return Tables(table, baseline, agree, curves, grid_keys, gtable, rule, yard, readout)


class _Charts:
    """Saves a report's charts into its folder: the files written and (file, caption) for the report."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[Path] = []
        self.images: list[tuple[str, str]] = []

    def save(self, fig: Any, stem: str, caption: str, svg: bool = False) -> None:
        path = self.out / f"{stem}.png"
        save_figure(fig, path, dpi=130)
        self.written.append(path)
        if svg:
            save_figure(fig, self.out / f"{stem}.svg")
            self.written.append(self.out / f"{stem}.svg")
        self.images.append((path.name, caption))
        if getattr(fig.canvas, "manager", None) is not None:  # optuna's figures live in pyplot: free them
            import matplotlib.pyplot as plt

            plt.close(fig)


def _draw_charts(loaded: LoadedStudy, t: Tables, charts: _Charts) -> None:
    """The roadmap (steps), per-field charts and heatmap (grids), trade-offs and training curves."""
    from . import charts as C

    name, kind, dataset = loaded.name, loaded.kind, loaded.study.data.dataset
    if kind == "steps":
        charts.save(C.roadmap_chart(t.table, t.baseline, dataset, f"{name}: the roadmap, step by step", t.agree),
                    "roadmap", "Roadmap: measured top-1 per step with 95 % intervals over seeds (left) and the "
                    "change vs the baseline step, measured (paired 95 % interval) vs the paper (right).", svg=True)
    keys = t.grid_keys
    for key in keys:
        effect = A.grid_effect(t.gtable, key, [k for k in keys if k != key])
        charts.save(C.grid_field_chart(effect, key, dataset, f"{name}: top-1 vs {key}"), f"grid_{slug(key)}",
                    f"Top-1 against {key} (error bars: 95 % interval over seeds).")
    if len(keys) == 2:
        charts.save(C.grid_heatmap(t.gtable, (keys[0], keys[1]), dataset, f"{name}: {keys[0]} × {keys[1]}"),
                    "heatmap", f"Mean top-1 over {keys[0]} and {keys[1]}.")
    if kind != "single":
        charts.save(C.tradeoff_chart(t.table, dataset, f"{name}: accuracy vs cost"), "pareto",
                    C.tradeoff_caption(t.table))
    charts.save(C.curves_chart(t.curves, f"{name}: training curves (mean over seeds)", dataset), "curves",
                "Validation top-1 and training loss per epoch.")


def _draw_search_charts(loaded: LoadedStudy, charts: _Charts, storage: str | None, study_dir: Path) -> list[str]:
    """optuna's history and importance charts of a search; returns notes (why they are missing, if so)."""
    try:
        from ablate.sweep.ledger import Ledger
        from ablate.sweep.options import LedgerOptions

        from .charts import search_charts

        ledger = Ledger(loaded, LedgerOptions(storage, study_dir.parent, readonly=True))
        for stem, fig in search_charts(ledger.store.search_study()).items():
            charts.save(fig, stem, "optuna: " + stem.replace("search_", "search ").replace("_", " "))
    except Exception as e:  # a report without the search charts beats no report
        return [f"search charts not drawn: {type(e).__name__}: {e}"]
    return []


def _write_documents(loaded: LoadedStudy, df: pd.DataFrame, t: Tables, notes: list[str],
                     images: list[tuple[str, str]], out: Path, t0: float) -> list[Path]:
    """report.md, report.html and results.tex, each whole or not at all; returns their paths."""
    blocks = report_blocks(loaded, df, t, notes, images)
    page = atomic_write_text(out / "report.html", to_html(blocks, out, f"{loaded.name} — ablate report"))
    tex = atomic_write_text(out / "results.tex", results_tex(t.gtable, loaded.kind, t.grid_keys,
                                                             f"{loaded.name}: {loaded.study.description}"))
    seconds = time.perf_counter() - t0
    md = atomic_write_text(out / "report.md", to_markdown(blocks) + f"\n_Report generated in {seconds:.1f} s._\n")
    return [md, page, tex]
