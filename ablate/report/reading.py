"""Reading a study's results for a report: the ledger (read-only; results.csv is only an export, read
alone when there is no ledger), the per-epoch metrics.csv files and a grid's swept values.

A study still running, or with failed trials, is read with those rows as they are (never dropped).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.config.errors import StudyError
from ablate.config.variant import LoadedStudy
from ablate.sweep.states import State, Status

from .text import one_line


def read_results(loaded: LoadedStudy, study_dir: Path, storage: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The study file's trials as the ledger (the source of truth, opened read-only) holds them: one row per
    variant x seed in study order, `new` for those not run yet (results.csv is only an export). Returns the
    table and notes about what was left out."""
    from ablate.sweep.ledger import Ledger
    from ablate.sweep.options import LedgerOptions
    from ablate.sweep.results import results_frame

    ledger = Ledger(loaded, LedgerOptions(storage, study_dir.parent, readonly=True))
    if not ledger.exists:
        if (study_dir / "results.csv").is_file():  # an export without its ledger (e.g. copied from elsewhere)
            return read_export(loaded, study_dir / "results.csv", ledger.where)
        raise StudyError(loaded.file, "results", f"no results yet: run `ablate run {loaded.file}` first "
                         f"(no ledger in {ledger.where})")
    ledger.expect_current_data()
    df = results_frame(ledger, count_missing=True)
    notes: list[str] = []
    known = ledger.known()
    other = {t.user_attrs.get("name", "?") for t in ledger.trials()
             if t.user_attrs.get("trial_id") not in known and t.state is not State.PRUNED}
    if other:
        notes.append(f"trials of {len(other)} variant(s) in the ledger belong to another version of the study "
                     f"(their variant ids differ from this study file's, e.g. other `--set` overrides) and are "
                     f"left out: {', '.join(sorted(map(str, other)))}.")
    search = loaded.study.search
    if search is not None and search.bounded:  # a complexity-bounded search: what its cost window let through
        from ablate.sweep.search import search_counts

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


def read_export(loaded: LoadedStudy, path: Path, ledger: str) -> tuple[pd.DataFrame, list[str]]:
    """results.csv alone (no ledger to read), restricted to the study file's variants (matched by id) and seeds
    (`--set seeds=...` too; seeds the adaptive rule added are kept up to `evidence.max_seeds` per variant), plus
    a `new` row for every variant x seed it does not have. A damaged file is a one-line error."""
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, OSError) as e:  # pandas' EmptyDataError/ParserError are ValueErrors
        raise StudyError(str(path), "", f"unreadable results table ({one_line(e)}) and no ledger in {ledger} to "
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
    df = _study_seeds(loaded, df[df["id"].isin(ids)], notes)
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


def _study_seeds(loaded: LoadedStudy, df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The rows of the study's seeds (`--set seeds=...` too). Rows of seeds the adaptive rule added (`round` > 0)
    are kept when the file's own seeds are the study's (the plan that added them is the study's); the rows left
    out are noted."""
    seeds = set(loaded.study.seeds)
    rounds = pd.to_numeric(df["round"], errors="coerce").fillna(0) if "round" in df else pd.Series(0, df.index)
    mine = df["seed"].isin(seeds) & (rounds == 0)
    if set(df.loc[rounds == 0, "seed"]) == seeds:
        mine |= rounds > 0
    if (~mine).any():
        other = sorted({int(s) for s in df.loc[~mine, "seed"]})
        notes.append(f"{int((~mine).sum())} row(s) of results.csv are of seeds this study does not run "
                     f"({', '.join(map(str, other))}; its seeds: {', '.join(map(str, sorted(seeds)))}) and are "
                     "left out.")
    return df[mine]


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
    grid = loaded.study.grid
    combos = list(itertools.product(*grid.values()))
    return {v.id: dict(zip(grid, combos[v.index], strict=True)) for v in loaded.variants}
