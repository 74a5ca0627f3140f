"""The documentation that the program can produce is produced by it: the study-file reference is generated from
the config models' field descriptions and must match what is committed; the README stays short."""

from __future__ import annotations

from pathlib import Path

from ablate.config.reference import study_reference

ROOT = Path(__file__).resolve().parents[1]


def test_the_study_file_reference_is_current() -> None:
    committed = (ROOT / "docs" / "study-file.md").read_text()
    assert committed == study_reference(), (
        "docs/study-file.md is stale: run `python -m ablate.config.reference > docs/study-file.md`")


def test_the_reference_documents_every_field() -> None:
    from ablate.config.net import NetConfig
    from ablate.config.study import Recipe

    page = study_reference()
    assert all(f"| `{name}` |" in page for model in (NetConfig, Recipe) for name in model.model_fields)


def test_the_readme_is_short_and_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in ("docs/study-file.md", "docs/guide.md", "docs/evidence.md", "docs/findings.md"):
        assert page in readme and (ROOT / page).is_file()
