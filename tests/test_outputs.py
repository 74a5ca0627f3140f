"""What ablate writes cannot be broken or hijacked by what a study says, and is written whole or not at all:
study text is inert in report.md, results.tex and the charts; a full disk (a file-size limit here) leaves the
old report and an error naming the file; an export that cannot replace its file names that file."""

from __future__ import annotations

import contextlib
import resource
import signal
from pathlib import Path

import pytest
from test_report import build, roadmap_study

from ablate.config.load import load_study
from ablate.report.latex import tex_text
from ablate.report.render import to_markdown
from ablate.report.writer import write_report

HOSTILE = "line one\n# Heading\n![tracker](https://evil.example/x.png) [click](https://evil.example)\n[r]: https://x"


def test_study_text_cannot_restructure_report_md_or_fetch_anything() -> None:
    md = to_markdown([("h", 1, "study"), ("p", HOSTILE), ("ul", ["- " + HOSTILE]),
                      ("table", ["name", "sign (|Δ| ≥ 0.4)"], [[HOSTILE, "1"]])])
    lines = md.splitlines()
    assert [ln for ln in lines if ln.startswith("#")] == ["# study"]  # no heading but the report's own
    assert "](" not in md.replace("]\\(", "") and not any(ln.startswith("[") for ln in lines)  # no link, image
    header = next(ln for ln in lines if ln.startswith("| name"))
    assert header.count("|") - header.count("\\|") == 3  # two cells: the `|` inside the header is escaped


def test_study_text_in_results_tex_is_typeset_as_written() -> None:
    tex = tex_text(r"s: 50% & #1 \input{/etc/passwd} $x$" + "\nnext")
    assert tex == r"s: 50\% \& \#1 \textbackslash{}input\{/etc/passwd\} \$x\$ next"
    assert tex_text("a → b, Δ −0.5 ± 1 — ρ ≥ 0.4, é ☃") == r"a $\to$ b, $\Delta$ -0.5 $\pm$ 1 -- $\rho$ $\geq$ 0.4, e ?"


def test_dollar_signs_in_step_names_draw_as_text(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=2)
    path = Path(loaded.file)
    path.write_text(path.read_text().replace("ResNet-50 (modern recipe)", "'cost $x^$ and $\\\\nosuch$'"))
    paths, md = build(load_study(path), tmp_path, draw=True)
    assert (tmp_path / "reports" / "synth" / "roadmap.png") in paths and "cost $x^$" in md


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past `nbytes` fail with EFBIG, as on a full disk (SIGXFSZ ignored so that they raise)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, before)


def test_a_full_disk_during_report_leaves_the_old_report_whole_and_names_the_file(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=3)
    build(loaded, tmp_path)
    out = tmp_path / "reports" / "synth"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    limit = min(len(before[f]) for f in ("report.md", "report.html", "results.tex")) // 2  # none of them fits
    with file_size_limit(limit), pytest.raises(OSError) as err:
        write_report(loaded, tmp_path / "results", tmp_path / "reports", draw=False)
    assert err.value.filename in {str(out / f) for f in ("report.md", "report.html", "results.tex")}
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing truncated, no temp file left


def test_an_export_that_cannot_replace_its_file_names_that_file(tmp_path: Path) -> None:
    from ablate.sweep.ledger import Ledger
    from ablate.sweep.options import LedgerOptions
    from ablate.sweep.results import results_frame, write_results

    loaded = roadmap_study(tmp_path, n=2)
    ledger = Ledger(loaded, LedgerOptions(None, tmp_path / "results"))
    ledger.sync(retry_failed=False)
    blocker = ledger.dir / "results.csv"
    (blocker / "x").mkdir(parents=True)  # a file that cannot be replaced (as an immutable one)
    with pytest.raises(OSError) as err:
        write_results(ledger, results_frame(ledger))
    assert err.value.filename == str(blocker) and not err.value.filename2
    assert sorted(p.name for p in ledger.dir.iterdir() if p.name.endswith(".tmp")) == []


def test_a_trial_file_that_cannot_be_replaced_is_named_not_its_temp_file(tmp_path: Path) -> None:
    import torch

    from ablate.train.checkpoint import save, write_metrics

    for name, write in (("metrics.csv", lambda p: write_metrics(p, [{"epoch": 1}])),
                        ("checkpoint.pt", lambda p: save(p, {"w": torch.zeros(2)}))):
        target = tmp_path / name
        (target / "x").mkdir(parents=True)  # cannot be replaced (as an immutable file)
        with pytest.raises(OSError) as err:
            write(target)
        assert err.value.filename == str(target) and not err.value.filename2, (name, err.value)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
