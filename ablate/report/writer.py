"""The one writer of reports/<study>/: reads results/<study>/, runs the analysis, saves the charts and
writes report.md and report.html (one self-contained file: images embedded as data: URIs).

A report is built from the ledger (read-only; results.csv is only an export): a study still running, or
with failed trials, gets a report in which those rows are shown as such (never dropped).
"""

from __future__ import annotations

import base64
import html
import math
import re
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.config.errors import StudyError
from ablate.config.load import LoadedStudy, changes_text
from ablate.sweep.states import Status

from . import analysis as A

# ("h", level, text) | ("p", text) | ("ul", items) | ("table", header, rows) | ("img", file, alt)
Block = tuple[Any, ...]


# ---------------------------------------------------------------- reading


def read_results(loaded: LoadedStudy, study_dir: Path, storage: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The study file's trials as the ledger (the source of truth, opened read-only) holds them: one row per
    variant x seed in study order, `new` for those not run yet (results.csv is only an export). Returns the
    table and notes about what was left out."""
    from ablate.sweep.ledger import Ledger
    from ablate.sweep.results import known_counts, results_frame

    ledger = Ledger(loaded, storage, study_dir.parent, readonly=True)
    if ledger.study is None:
        if (study_dir / "results.csv").is_file():  # an export without its ledger (e.g. copied from elsewhere)
            return _read_export(loaded, study_dir / "results.csv", ledger.where)
        raise StudyError(loaded.file, "results", f"no results yet: run `ablate run {loaded.file}` first "
                         f"(no ledger in {ledger.where})")
    ledger.expect_current_data()
    df = results_frame(ledger, known_counts(ledger))
    notes: list[str] = []
    known = ledger.known()
    other = {t.user_attrs.get("name", "?") for t in ledger.trials()
             if t.user_attrs.get("trial_id") not in known and t.state.name != "PRUNED"}
    if other:
        notes.append(f"trials of {len(other)} variant(s) in the ledger belong to another version of the study "
                     f"(their variant ids differ from this study file's, e.g. other `--set` overrides) and are "
                     f"left out: {', '.join(sorted(map(str, other)))}.")
    search = loaded.study.search
    if search is not None and search.bounded:  # a complexity-bounded search: what its cost window let through
        from ablate.measure.bounds import search_counts

        n = search_counts(ledger.trials())
        notes.append(f"cost window ({'GFLOPs ' + str(list(search.flops)) if search.flops else ''}"
                     f"{' ' if search.flops and search.params else ''}"
                     f"{'params ' + str(list(search.params)) if search.params else ''}): {n['accepted']} sampled "
                     f"configuration(s) accepted and trained, {n['rejected']} rejected by a count before training.")
    for note in (ledger.version_note(), f"{(df['status'] == Status.STALE).sum()} finished trial(s) were trained on "
                 "other data than data.root holds now (stale) and are not counted as done."
                 if (df["status"] == Status.STALE).any() else None):
        if note:
            notes.append(note)
    df = df.sort_values(["index", "seed"], kind="stable").reset_index(drop=True)
    return df, notes


def _read_export(loaded: LoadedStudy, path: Path, ledger: str) -> tuple[pd.DataFrame, list[str]]:
    """results.csv alone (no ledger to read), restricted to the study file's variants (matched by id), plus a
    `new` row for every variant x seed it does not have. A damaged file is a one-line error."""
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, OSError) as e:  # pandas' EmptyDataError/ParserError are ValueErrors
        raise StudyError(str(path), "", f"unreadable results table ({_one_line(e)}) and no ledger in {ledger} to "
                         "rebuild it from") from None
    missing = [c for c in ("id", "seed", "status", "name") if c not in df.columns]
    if missing:
        raise StudyError(str(path), missing[0], f"not an ablate results table (no '{missing[0]}' column) and no "
                         f"ledger in {ledger} to rebuild it from")
    notes = [f"Built from {path} alone: no ledger in {ledger}."]
    ids = {v.id for v in loaded.variants}
    stale = df[~df["id"].isin(ids)]
    if len(stale):
        names = ", ".join(dict.fromkeys(str(n) for n in stale["name"]))
        notes.append(f"{len(stale)} row(s) of results.csv belong to another version of the study (their variant "
                     f"ids differ from this study file's, e.g. other `--set` overrides) and are left out: {names}.")
    df = df[df["id"].isin(ids)]
    have = set(zip(df["id"], df["seed"], strict=True))
    extra = []
    for v in loaded.variants:
        ref = v.reference
        for seed in loaded.study.seeds:
            if (v.id, seed) not in have:
                extra.append({"index": v.index, "name": v.name, "group": v.group, "id": v.id,
                              "trial_id": v.trial_id(seed), "seed": seed, "status": Status.NEW.value, "attempts": 0,
                              "ref_top1": ref.top1 if ref else None, "ref_top1_std": ref.top1_std if ref else None,
                              "ref_gflops": ref.gflops if ref else None})
    if extra:
        df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    order = {v.id: v.index for v in loaded.variants}
    df = df.assign(index=df["id"].map(order)).sort_values(["index", "seed"]).reset_index(drop=True)
    return df, notes


def read_metrics(study_dir: Path, df: pd.DataFrame) -> pd.DataFrame:
    """Every trials/<trial_id>/metrics.csv of the table's rows, with `id`, `seed` and `status` added."""
    frames = []
    for row in df[["trial_id", "id", "seed", "status"]].itertuples(index=False):
        path = study_dir / "trials" / str(row.trial_id) / "metrics.csv"
        if path.is_file():
            try:
                m = pd.read_csv(path)
            except (ValueError, OSError):  # empty, garbage, not UTF-8: a damaged curve is left out
                continue
            if not {"epoch", "top1", "train_loss"} <= set(m.columns):
                continue
            m = m.assign(epoch=pd.to_numeric(m["epoch"], errors="coerce")).dropna(subset=["epoch"])
            if len(m):
                frames.append(m.assign(id=row.id, seed=row.seed, status=row.status))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def grid_values(loaded: LoadedStudy) -> dict[str, dict[str, Any]]:
    """variant id -> {grid key: value as written in the study}. A grid variant's index is its position in
    the cartesian product (exclude: removes variants but keeps the others' indices)."""
    import itertools

    grid = loaded.study.grid
    combos = list(itertools.product(*grid.values()))
    return {v.id: dict(zip(grid, combos[v.index], strict=True)) for v in loaded.variants}


# ---------------------------------------------------------------- writing


def write_report(loaded: LoadedStudy, results_dir: Path, reports_dir: Path, storage: str | None = None) -> list[Path]:
    """Build reports_dir/<study>/ from results_dir/<study>/; return the files written.

    results_dir and reports_dir are the roots (`results`, `reports`). `storage` is the optuna storage of
    the ledger; it is only read for a search study's history (default: results/<study>/ledger.journal).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from . import charts as C

    t0 = time.perf_counter()
    study_dir = Path(results_dir) / loaded.name
    out = Path(reports_dir) / loaded.name
    df, notes = read_results(loaded, study_dir, storage)
    kind = loaded.kind
    table = A.variant_table(df, kind)
    dataset = loaded.study.data.dataset
    table, baseline = A.vs_baseline(table, df)
    table["changes"] = table["id"].map({v.id: changes_text(v.changes, limit=4) for v in loaded.variants})
    agree = A.agreement(table, df, kind) if kind != "search" else None
    curves = A.curve_table(read_metrics(study_dir, df), table)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: list[tuple[str, str]] = []  # (file, caption)

    def save(fig: Any, stem: str, caption: str, svg: bool = False) -> None:
        path = out / f"{stem}.png"
        fig.savefig(path, dpi=130)
        written.append(path)
        if svg:
            fig.savefig(out / f"{stem}.svg")
            written.append(out / f"{stem}.svg")
        images.append((path.name, caption))
        if getattr(fig.canvas, "manager", None) is not None:  # optuna's figures live in pyplot: free them
            import matplotlib.pyplot as plt

            plt.close(fig)

    name = loaded.name
    if kind == "steps":
        save(C.roadmap_chart(table, baseline, dataset, f"{name}: the roadmap, step by step", agree), "roadmap",
             "Roadmap: measured top-1 per step with 95 % intervals over seeds (left) and the change vs the "
             "baseline step, measured (paired 95 % interval) vs the paper (right).", svg=True)
    grid_keys = list(loaded.study.grid) if kind == "grid" else []
    gtable = A.grid_table(table, grid_values(loaded)) if grid_keys else table
    for key in grid_keys:
        effect = A.grid_effect(gtable, key, [k for k in grid_keys if k != key])
        save(C.grid_field_chart(effect, key, dataset, f"{name}: top-1 vs {key}"), f"grid_{_slug(key)}",
             f"Top-1 against {key} (error bars: 95 % interval over seeds).")
    if len(grid_keys) == 2:
        save(C.grid_heatmap(gtable, (grid_keys[0], grid_keys[1]), dataset, f"{name}: {grid_keys[0]} × "
             f"{grid_keys[1]}"), "heatmap", f"Mean top-1 over {grid_keys[0]} and {grid_keys[1]}.")
    if kind != "single":
        save(C.tradeoff_chart(table, dataset, f"{name}: accuracy vs cost"), "pareto",
             "Top-1 vs GFLOPs (paper scale) and vs measured training throughput; circled points form the "
             "Pareto front.")
    save(C.curves_chart(curves, f"{name}: training curves (mean over seeds)", dataset), "curves",
         "Validation top-1 and training loss per epoch.")
    if getattr(loaded.study, "search", None):
        try:
            import optuna

            from ablate.sweep.ledger import open_storage

            ostudy = optuna.load_study(study_name=name, storage=open_storage(storage, study_dir,
                                                                                  readonly=True))
            for stem, fig in C.search_charts(ostudy).items():
                save(fig, stem, "optuna: " + stem.replace("search_", "search ").replace("_", " "))
        except Exception as e:  # a report without the search charts beats no report
            notes.append(f"search charts not drawn: {type(e).__name__}: {e}")

    blocks = _blocks(loaded, df, table, gtable, grid_keys, notes, images, agree)
    md = out / "report.md"
    md.write_text(_markdown(blocks))
    page = out / "report.html"
    page.write_text(_html(blocks, out, f"{name} — ablate report"))
    tex = out / "results.tex"
    tex.write_text(_latex(_result_table(gtable, kind, grid_keys), f"{name}: {loaded.study.description}"))
    written += [md, page, tex]
    seconds = time.perf_counter() - t0
    md.write_text(md.read_text() + f"\n_Report generated in {seconds:.1f} s._\n")
    return written


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


# ---------------------------------------------------------------- content


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


def _blocks(loaded: LoadedStudy, df: pd.DataFrame, table: pd.DataFrame, gtable: pd.DataFrame,
            grid_keys: list[str], notes: list[str], images: list[tuple[str, str]],
            agree: dict[str, Any] | None = None) -> list[Block]:
    s = loaded.study
    r = s.recipe
    d = s.data
    counts = df["status"].value_counts()
    status = Status.counts_line(counts.to_dict(), label=True)
    devices = ", ".join(sorted({str(x) for x in df.get("device", pd.Series(dtype=str)).dropna()})) or "—"
    recipes = list(dict.fromkeys(v.recipe for v in loaded.variants)) or [r]
    recipe_lines = [_schedule(x) for x in recipes]
    data_bits = [f"`{d.dataset}`", f"{d.resolved('image_size')} px"]
    data_bits += [f"train subset {d.train_subset}"] if d.train_subset else []
    data_bits += [f"val subset {d.val_subset}"] if d.val_subset else []
    n_var = len(loaded.variants)
    blocks: list[Block] = [
        ("h", 1, f"{s.name}: ablation report"),
        ("p", s.description or "(no description)"),
        ("h", 2, "What was run"),
        ("ul", [
            f"study file: `{loaded.file}` ({loaded.kind}: {n_var} variant{'s' * (n_var != 1)} × {len(s.seeds)} "
            f"seed{'s' * (len(s.seeds) != 1)} = {n_var * len(s.seeds)} trials)",
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
        ]),
    ]
    for note in notes:
        blocks.append(("p", f"**Note:** {note}"))
    blocks += [("h", 2, "Findings"), ("ul", A.findings(table, loaded.kind, agree))]
    blocks += [("h", 2, "Results"), _result_table(gtable, loaded.kind, grid_keys)]
    blocks.append(("p", _table_legend(table, loaded.kind)))
    blocks.append(("h", 2, "Charts"))
    for file, caption in images:
        blocks += [("img", file, caption), ("p", f"_{caption}_")]
    failed = df[df["status"].isin([Status.FAILED, Status.INTERRUPTED])]
    blocks.append(("h", 2, "Failed trials"))
    if failed.empty:
        blocks.append(("p", "None."))
    else:
        rows = [[str(x["name"]), str(x["seed"]), str(x["status"]), str(int(x.get("attempts") or 0)),
                 _one_line(x.get("fail_reason"))] for _, x in failed.iterrows()]
        blocks.append(("table", ["name", "seed", "status", "attempts", "reason"], rows))
    blocks += [("h", 2, "How the numbers are computed"), ("ul", _method_notes(table, loaded.kind))]
    return blocks


def _one_line(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "(no reason recorded)"
    return " ".join(str(x).split())[:300]


def _result_table(t: pd.DataFrame, kind: str, grid_keys: list[str]) -> Block:
    vs = "Δ vs prev [95% CI]" if kind == "steps" else "Δ vs first [95% CI]"
    header = ["#", "name", *grid_keys, "group", "changes", "status", "params (M)", "GFLOPs", "train img/s",
              "infer img/s", "top-1 mean [95% CI] (n)", vs, "verdict", "paper top-1", "paper Δ"]
    if kind == "grid":
        header.remove("group")
        header.remove("changes")  # the grid columns are the changes
    rows = []
    for _, r in t.iterrows():
        top1 = "—"
        if math.isfinite(r["top1_mean"]):
            top1 = A.fmt(r["top1_mean"]) + A.fmt_ci(r.get("top1_lo"), r.get("top1_hi")) + f" (n={r['n']})"
        delta = A.fmt(r["delta"], signed=True) + A.fmt_ci(r["delta_lo"], r["delta_hi"], signed=True)
        p = f", p={r['p']:.3f}" if isinstance(r["p"], float) and math.isfinite(r["p"]) else ""
        ref = A.fmt(r["ref_top1"]) + (f" ± {A.fmt(r['ref_top1_std'])}" if math.isfinite(r["ref_top1_std"]) else "")
        row = [str(r["index"] + 1), str(r["name"]), *[A._show(r[k]) for k in grid_keys], str(r["group"]),
               str(r.get("changes") or "—"), str(r["status"]), A.fmt(r["params"] / 1e6), A.fmt(r["gflops"]),
               A.fmt(r["train_img_per_s"], 0), A.fmt(r["infer_img_per_s"], 0), top1, delta,
               (str(r["noise"]) + p) if r["noise"] else "", ref if ref != "—" else "—",
               A.fmt(r["ref_delta"], signed=True)]
        if kind == "grid":
            del row[2 + len(grid_keys): 4 + len(grid_keys)]
        rows.append(row)
    return ("table", header, rows)


def _table_legend(t: pd.DataFrame, kind: str) -> str:
    vs = "the previous step (reference rows are not steps)" if kind == "steps" else "the first variant"
    return (f"changes: every resolved network, recipe and data field that differs from {vs} (computed from the "
            f"configs, not from the names). Δ: change of mean top-1 vs {vs}, in points, with its paired 95 % "
            "t-interval over shared seeds; verdict: `real` (paired t-test p < 0.05), `within noise`, or not judged "
            "with one seed. paper: ImageNet-1K top-1 from the study's `reference:` (± the paper's seed std: context "
            "only, never a verdict's basis; a proxy's accuracies are on another scale: compare changes and "
            "orderings, not levels). GFLOPs at the paper's scale; img/s measured as trained (median over seeds).")


def _method_notes(t: pd.DataFrame, kind: str) -> list[str]:
    sigma = A.typical_seed_std(t)
    paper = (f" The paper's own seed std (median {A.fmt(sigma)} points on ImageNet) is context, not a basis for "
             "any verdict here." if math.isfinite(sigma) else "")
    return [
        "top-1: final-epoch validation top-1 of each finished seed; mean with a 95 % Student-t interval over "
        "seeds (scipy.stats.t).",
        f"verdict: with ≥ 2 shared seeds, a paired t-test of the per-seed differences (scipy.stats.ttest_rel, "
        f"two-sided, α = {A.ALPHA}) and the 95 % t-interval of the mean difference; `real` when p < α, "
        "`within noise` otherwise. With one seed no change is judged." + paper,
        "agreement: Spearman ρ (scipy.stats.spearmanr) between measured mean top-1 and paper top-1 over steps "
        "that have both (levels), and between step changes Δ and paper Δ (changes); reference rows (group "
        "`reference`) are left out. Intervals: percentile bootstrap over seeds (scipy.stats.bootstrap, "
        f"{A.BOOTSTRAP_RESAMPLES} resamples; the same seed resample for every step). Sign agreement is counted on "
        f"the steps whose paper change is ≥ {A.BIG_STEP:g} points, larger than the paper's own seed noise. "
        "With few seeds the bootstrap is coarse (3 seeds have only 10 distinct resamples), so its interval can "
        "be narrow or sit at the point estimate: read it as a lower bound on the uncertainty.",
        "Pareto front: variants no other variant beats on both top-1 and cost (GFLOPs lower / throughput higher).",
    ]


# ---------------------------------------------------------------- rendering


def _md_cell(text: str) -> str:
    return _md(text).replace("|", "\\|").replace("\n", " ")


def _md(text: str) -> str:
    """Text from a study (names, descriptions, reasons) with its HTML shown, never rendered (markdown viewers
    render raw HTML; report.html escapes it too): `<` and `&` escaped, `->` left readable."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


def _markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if b[0] == "h":
            lines += ["#" * b[1] + " " + _md(b[2]), ""]
        elif b[0] == "p":
            lines += [_md(b[1]), ""]
        elif b[0] == "ul":
            lines += [f"- {_md(item)}" for item in b[1]] + [""]
        elif b[0] == "table":
            header, rows = b[1], b[2]
            frame = pd.DataFrame([[_md_cell(c) for c in row] for row in rows], columns=header, dtype=str)
            align = ["right" if h in _NUMERIC else "left" for h in header]
            lines += [frame.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True), ""]
        elif b[0] == "img":
            lines += [f"![{_md(b[2])}]({b[1]})", ""]
    return "\n".join(lines)


def _latex(table: Block, caption: str) -> str:
    """The results table as a LaTeX `table` (booktabs rules) for a paper: pandas' Styler, cells escaped."""
    header, rows = table[1], table[2]
    frame = pd.DataFrame([[c.replace("`", "") for c in row] for row in rows], columns=header, dtype=str)
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    align = "".join("r" if h in _NUMERIC else "l" for h in header)
    return styler.to_latex(column_format=align, hrules=True, caption=caption.replace("_", r"\_"),
                           label="tab:ablate-results", position="htbp")


_NUMERIC = {"#", "params (M)", "GFLOPs", "train img/s", "infer img/s", "Δ vs prev [95% CI]", "Δ vs first [95% CI]",
            "paper top-1", "paper Δ", "seed", "attempts"}


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w])_(.+?)_(?![\w])", r"<i>\1</i>", out)


_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12.5px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even){background:#fafafa}
img{max-width:100%;border:1px solid #eee}code{background:#f4f4f4;padding:0 3px}h1{font-size:1.6em}"""


def _html(blocks: list[Block], folder: Path, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b[0] == "h":
            parts.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            parts.append(f"<p>{_inline(b[1])}</p>")
        elif b[0] == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
        elif b[0] == "table":
            header, rows = b[1], b[2]
            num = [h in _NUMERIC for h in header]
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td{' class=n' if num[j] else ''}>{_inline(c)}</td>"
                                            for j, c in enumerate(row)) + "</tr>" for row in rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b[0] == "img":
            data = base64.b64encode((folder / b[1]).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(b[2], quote=True)}' src='data:image/png;base64,{data}'>"
                         "</figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
