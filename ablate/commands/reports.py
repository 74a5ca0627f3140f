"""`ablate report` and `ablate compare`: charts and tables of finished (or running) studies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ablate.config.errors import StudyError

from .options import OutOpt, ResultsOpt, SetOpt, StorageOpt, StudyArg


def report(study: StudyArg, set_: SetOpt = None, storage: StorageOpt = None, results: ResultsOpt = Path("results"),
           out: OutOpt = Path("reports"),
           charts: Annotated[bool, typer.Option(help="Draw the charts; --no-charts writes the tables only (a "
                                                     "few seconds faster, e.g. to look at a running study).")] = True,
           ) -> None:
    """Charts and a report (report.md, self-contained report.html) of results/<study>/ into reports/<study>/.

    Roadmap or grid/search charts, accuracy vs GFLOPs and vs throughput with the Pareto front, training curves,
    the table with changes vs the previous step and the paper, seed-noise flags, Spearman agreement.

    Works while a study is still running or has failed trials: those rows are shown as such.
    """
    from ablate.config.load import load_study
    from ablate.report.writer import write_report

    loaded = load_study(study, set_ or [])
    for path in write_report(loaded, results, out, storage, draw=charts):
        print(path)


def compare(studies: Annotated[list[Path], typer.Argument(help="Two or more study files (YAML).", show_default=False)],
            storage: StorageOpt = None, results: ResultsOpt = Path("results"), out: OutOpt = Path("reports"),
            name: Annotated[str | None, typer.Option(help="Name of the comparison (reports/compare-<name>/); "
                                                     "default: the study names joined by '-'.")] = None,
            set_: Annotated[list[str] | None, typer.Option(
                "--set", "-s", metavar="[N:]KEY=VALUE", show_default=False,
                help="Override a field of every study, or with `N:` of the N-th study only (1-based), e.g. compare "
                     "a study with a replication run of it: `ablate compare s.yaml s.yaml --set 2:name=s-rep "
                     "--set '2:seeds=[100,101,102]'` (repeatable).")] = None) -> None:
    """Several studies side by side (e.g. one roadmap under proxies of different budgets).

    Per step the mean and 95 % interval of each, the paper's value, Spearman rho with the paper (levels and
    changes) with bootstrap intervals, the paper's sign on the big steps, the same for every readout (final,
    best and EMA top-1, validation loss, summed training loss) beside predictors that train nothing (GFLOPs, parameters,
    step index) and the paper's own cross-regime agreement, and each study's cost (trained images,
    trial-seconds, wall). Writes reports/compare-<name>/compare.md, compare.html, compare.png, compare.csv,
    compare-steps.csv, compare-agreement.csv.

    Steps are matched by name; steps not shared by every study are listed. A study never run is an error
    (exit 2) and nothing is written.
    """
    from ablate.config.load import load_study
    from ablate.report.compare import write_compare

    if len(studies) < 2:
        raise StudyError(str(studies[0]) if studies else "compare", "", "give at least two study files to compare")
    loaded = [load_study(s, _overrides(set_ or [], i + 1, len(studies))) for i, s in enumerate(studies)]
    names = [s.name for s in loaded]
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise StudyError(str(studies[names.index(dup)]), "name", f"'{dup}' is given twice: compare different studies")
    for path in write_compare(loaded, results, out, name, storage):
        print(path)


def _overrides(sets: list[str], k: int, n: int) -> list[str]:
    """The `--set` overrides of the k-th of n studies: those without a prefix, and those prefixed `k:`."""
    import re

    out = []
    for item in sets:
        m = re.match(r"^(\d+):(.*)$", item)
        if m is None:
            out.append(item)
            continue
        if not 1 <= int(m.group(1)) <= n:
            raise StudyError("--set", item.split("=", 1)[0], f"study {m.group(1)} of {n}: give 1..{n} before ':'")
        if int(m.group(1)) == k:
            out.append(m.group(2))
    return out
