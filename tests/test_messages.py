"""What ablate says about a study counts what the study asks for: a search by its trial budget (its variants are
sampled while it runs), never "0 variants"; a study never run is one line, not an empty table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_bad_inputs import SEARCH
from typer.testing import CliRunner

from ablate.cli import app
from ablate.config.load import load_study


def search_study(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SEARCH.replace("DIM", "[0.1, 0.2, 0.3]").replace("trials: 2", "trials: 5"))
    return path


def test_status_of_a_search_never_run_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["status", str(search_study(tmp_path))], one_line_errors=True)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["s: no trial yet (search: random sampler, 5 trials over recipe.lr, sampler seed "
                                     "0); `ablate run` queues and trains them"]
    assert not (tmp_path / "results").exists()


def test_a_search_report_counts_its_trials_not_its_variants(tmp_path: Path) -> None:
    from ablate.report.content import _what_was_run

    loaded = load_study(search_study(tmp_path))
    df = pd.DataFrame({"status": ["done"] * 3, "device": ["cpu"] * 3})
    head = _what_was_run(loaded, df)
    assert "(search: random sampler, 5 trials over recipe.lr, sampler seed 0)" in head[0], head[0]
    assert "0 variants" not in " ".join(head) and head[1] == "trials: 3 done"
