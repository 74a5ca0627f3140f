"""Rendering a report's blocks: report.md (pipe tables from pandas), report.html (one self-contained page,
images embedded as data: URIs); results.tex is latex.py's.

A block is ("h", level, text) | ("p", text) | ("ul", items) | ("table", header, rows) | ("img", file, alt);
text may hold **bold**, `code` and _italics_ (markdown), shown as such in HTML.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

Block = tuple[Any, ...]
# Table columns aligned right (numbers) in every format.
_NUMERIC = {"#", "params (M)", "GFLOPs", "training img/s (as trained, shared cores)", "eval img/s (as trained)",
            "bench infer img/s [min–max]", "bench train img/s", "Δ vs prev [95% CI]", "Δ vs first [95% CI]",
            "paper top-1", "paper Δ", "seed", "attempts"}


def _md_cell(text: str) -> str:
    return _md(text).replace("|", "\\|").replace("\n", " ")


def _md(text: str) -> str:
    """Text from a study (names, descriptions, reasons) shown as written, never as markup that restructures the
    page or fetches anything: HTML escaped (`<`, `&`; `->` left readable), one line (a newline would start a
    heading, a list or a link definition), no link or image (`](`, `][`), and no block marker at its start."""
    text = str(text).replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;")
    text = re.sub(r"\s*[\r\n]+\s*", " ", text).strip().replace("](", "]\\(").replace("][", "]\\[")
    text = re.sub(r"^(\d+)([.)])(?=\s|$)", r"\1\\\2", text)  # `1. ` would start a numbered list
    return re.sub(r"^([#>=\[|~]|[*+\-](?=\s)|`{3})", r"\\\1", text)  # (leading spaces, stripped: a code block)


def to_markdown(blocks: list[Block]) -> str:
    """The blocks as markdown: study text escaped (`_md`), tables as pipe tables."""
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
            head = [h.replace("|", "\\|") for h in header]  # a bare `|` in a header cell splits the table
            frame = pd.DataFrame([[_md_cell(c) for c in row] for row in rows], columns=head, dtype=str)
            align = ["right" if h in _NUMERIC else "left" for h in header]
            lines += [frame.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True), ""]
        elif b[0] == "img":
            lines += [f"![{_md(b[2])}]({b[1]})", ""]
    return "\n".join(lines)


PLAIN_TEXT = {"text.parse_math": False}  # matplotlib: a study's `$...$` is text, not mathtext that can fail


def save_figure(fig: Any, path: Path, **kwargs: Any) -> Path:
    """A chart saved whole or not at all (a full disk leaves the old image, and names the file)."""
    from ablate.files import atomic_write

    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:], **kwargs))


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w])_(.+?)_(?![\w])", r"<i>\1</i>", out)


_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12.5px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even){background:#fafafa}
img{max-width:100%;border:1px solid #eee}code{background:#f4f4f4;padding:0 3px}h1{font-size:1.6em}"""


def to_html(blocks: list[Block], folder: Path, title: str) -> str:
    """The blocks as one HTML page; images are read from `folder` and embedded."""
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
