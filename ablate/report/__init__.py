"""Reports of a study: analysis (pure functions over the results table), charts (Figures), and the
one writer that assembles reports/<study>/ (charts, report.md, self-contained report.html)."""

from .writer import write_report

__all__ = ["write_report"]
