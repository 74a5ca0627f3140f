"""`ablate validate` and `ablate flops`: a study checked and counted, nothing trained."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Annotated

import typer

from ablate.config.errors import StudyError

from .options import AllowLargeOpt, SetOpt, StudyArg


def check_sizes(loaded, allow_large: bool) -> None:
    if not allow_large:
        from ablate.config.checks import check_sizes

        check_sizes(loaded)


def validate(
    study: StudyArg, set_: SetOpt = None, allow_large: AllowLargeOpt = False,
    no_data: Annotated[bool, typer.Option("--no-data", help="Skip the check that the data is present (a study "
                                          "checked here, run on another machine).")] = False,
) -> None:
    """Check a study file and print a one-line summary (or the one-line error, exit code 2): everything a run
    checks before it trains (fields, plug-ins, sizes, the data's presence and size), and warnings (stderr) about
    what would train other than it seems (kernels past their feature maps, an EMA longer than the run)."""
    from ablate.config.advice import warnings
    from ablate.config.load import load_study

    from .preflight import check_data

    loaded = load_study(study, set_ or [])
    check_sizes(loaded, allow_large)
    if not no_data:
        try:
            check_data(loaded)
        except StudyError as e:  # data absent (not too small): maybe a study checked here and run elsewhere
            if e.path not in ("data", "data.root"):
                raise
            raise StudyError(e.file, e.path, f"{e.problem} (a study for another machine: --no-data)") from None
    for path, text in warnings(loaded):
        print(f"{loaded.file}: {path}: warning: {text}", file=sys.stderr)
    s = loaded.study
    seeds = len(s.seeds)
    if s.search is not None and s.search.sampler != "grid":
        print(f"{loaded.file}: ok: study '{s.name}', search ({s.search.sampler} sampler, {s.search.trials} trials "
              f"over {', '.join(s.search.space)}, seed {s.search.seed}); data {s.data.dataset} "
              f"@{s.data.resolved('image_size')}px, recipe {s.recipe.preset}, {s.recipe.epochs} epochs")
        return
    print(f"{loaded.file}: ok: study '{s.name}', {len(loaded.variants)} variants ({loaded.kind}) x {seeds} "
          f"seed{'s' * (seeds != 1)} = {len(loaded.variants) * seeds} trials; data {s.data.dataset} "
          f"@{s.data.resolved('image_size')}px, recipe {s.recipe.preset}, {s.recipe.epochs} epochs")


def flops(
    study: StudyArg,
    set_: SetOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
    breakdown: Annotated[bool, typer.Option(help="Add GFLOPs per part (stem, stage1..N, head) at the paper's size.")]
    = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Count again instead of reading the cache.")] = False,
    allow_large: AllowLargeOpt = False,
) -> None:
    """FLOPs and parameters of every variant, without training.

    gflops: at the paper's scale (unscaled network, measure.flops_image_size, 3 channels, 1000 classes;
    one multiply-add = one FLOP, eval mode), conv + linear layers only: the count that reproduces the
    paper's Table 10 and 11. gflops_fvcore: fvcore's full count (norm layers too). vs_paper: why a count
    misses the paper's printed value by more than its rounding. gflops_train: fvcore's count of the network
    as trained (after `scale:`, at the data's image size, channels and classes). Counts are cached.
    changes: every resolved network/recipe/data field that differs from the previous step (or, for
    variants and grids, from the first variant); in full with --format json or csv.
    """
    if format not in ("table", "csv", "json"):
        raise StudyError("--format", "", f"unknown format '{format}'; valid: table, csv, json")
    from ablate.config.load import load_study
    from ablate.config.variant import changes_text

    loaded = load_study(study, set_ or [])
    check_sizes(loaded, allow_large)
    from ablate.measure.table import paper_view

    rows = [paper_view(r) for r in count(loaded, use_cache=not no_cache)]
    if format == "json":
        print(json.dumps(rows, indent=1))
        return
    import pandas as pd

    if not rows:  # a tpe/random search: its variants are sampled while it runs
        print(f"{study}: a {loaded.study.search.sampler} search samples its variants while it runs: nothing to count "
              "before `ablate run` (its status and report show each sampled variant's FLOPs)", file=sys.stderr)
        return
    df = pd.DataFrame(rows)
    if breakdown and "breakdown" in df:
        parts = pd.DataFrame([b if isinstance(b, dict) else {} for b in df["breakdown"]]).add_prefix("gflops_")
        df = pd.concat([df, parts], axis=1)
    df = df.drop(columns=["breakdown", "net", "recipe"], errors="ignore")
    df["changes"] = [changes_text({k: tuple(ab) for k, ab in (c or {}).items()}, limit=50 if format == "csv" else 3)
                     for c in df["changes"]]
    if format == "csv":
        df.to_csv(sys.stdout, index=False)
        return
    _print_table(df)


def _print_table(df) -> None:
    """The `flops` table: the counts, the solved width multiplier, the breakdown, the paper's value and the
    changes, where the study has them."""
    cols = ["name", "group", "id", "params", "gflops", "gflops_fvcore", "gflops_train", "ref_gflops"]
    cols[4:4] = ["width_mult"] if df["width_mult"].notna().any() else []  # `match:`: the solved multiplier
    cols += [c for c in df.columns if c.startswith("gflops_") and c not in ("gflops_train", "gflops_fvcore")]
    if df["ref_gflops"].isna().all():
        cols.remove("ref_gflops")
    if df["vs_paper"].notna().any():
        cols.append("vs_paper")
    if df["changes"].astype(bool).any():
        cols.append("changes")
    show = df[cols].copy()
    show["group"] = show["group"].fillna("-")
    show["params"] = show["params"].map(lambda p: f"{int(p):,}" if p == p and p is not None else "-")
    for text in ("vs_paper", "changes"):  # text reads left-aligned: pad the cells and the header to one width
        if text in show:
            show[text] = show[text].fillna("-")
            width = max(len(text), *map(len, show[text]))
            show[text] = show[text].str.ljust(width)
            show = show.rename(columns={text: text.ljust(width)})
    print(show.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.3f}"))


def count(loaded, use_cache: bool) -> list[dict]:
    from tqdm import tqdm

    from ablate.measure.table import count_study
    from ablate.verbosity import quiet

    bar: list[tqdm] = []

    def progress(done: int, total: int, name: str) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc="counting", unit="net", file=sys.stderr, disable=quiet() or None,
                            leave=False))
            importlib.import_module("pandas")  # for the table: imported while the counting processes start
        bar[0].n = done
        bar[0].set_postfix_str(name[:30], refresh=True)

    try:
        return count_study(loaded, progress, use_cache=use_cache)
    finally:
        if bar:
            bar[0].close()
