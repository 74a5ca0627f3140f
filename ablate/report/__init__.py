"""Reports of a study: analysis (pure functions over a table), charts (Figures), summary.csv, and the one writer
that assembles reports/<study>/ (`writer.write_report`: charts, report.md, self-contained report.html)."""
