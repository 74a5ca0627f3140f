"""Every README (and docs/) sample is the program's current output (see tests/readme_samples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from readme_samples import MARKER, Spec, check, files, render


@pytest.mark.slow
@pytest.mark.parametrize("path", files(), ids=lambda p: p.name)
def test_samples_are_the_programs_output(path: Path) -> None:
    for spec, shown, now in check(path):
        assert shown == now, f"{path.name}: the sample of `{spec}` has drifted: run python tests/readme_samples.py"


def test_there_are_samples_to_check() -> None:
    assert any(MARKER.search(p.read_text()) for p in files())


def test_a_drifted_sample_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import readme_samples

    monkeypatch.setattr(readme_samples, "output", lambda command: "  a  b\n  1  2\n  3  4\n  5  6\n")
    spec = Spec.parse("ablate flops x.yaml | rows 1,3 | width 4")
    assert render(spec) == "$ ablate flops x.yaml\n  a\n  1\n  ...\n  5\n"
    doc = tmp_path / "README.md"
    doc.write_text("<!-- sample: ablate flops x.yaml | rows 1,3 | width 4 -->\n"
                   "```\n$ ablate flops x.yaml\n  a\n  1\n```\n")
    monkeypatch.setattr(readme_samples, "files", lambda: [doc])
    (_, shown, now), = check(doc)
    assert shown != now  # the sample lacks rows the program prints: the slow test above would fail
    assert readme_samples.update(doc) == 1 and check(doc)[0][1] == check(doc)[0][2]
