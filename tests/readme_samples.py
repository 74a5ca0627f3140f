"""README samples are the program's output: each fenced block after a `<!-- sample: ... -->` marker in README.md
or docs/*.md is generated here, and `tests/test_readme_samples.py` fails when one has drifted.

    python tests/readme_samples.py          # rewrite every sample from the program's current output

Marker: `<!-- sample: ablate flops studies/roadmap.yaml | rows 1-5,16-17 | width 150 -->`: the command (run
from the repository root), the table rows kept (1-based, after the header; `  ...` stands for the others) and
the width lines are cut to (both optional).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- sample: (?P<spec>.+?) -->\n```[a-z]*\n(?P<block>.*?)```", re.S)


@dataclass(frozen=True)
class Spec:
    command: str
    rows: list[int] | None
    width: int | None

    @classmethod
    def parse(cls, text: str) -> Spec:
        command, *options = (part.strip() for part in text.split("|"))
        rows, width = None, None
        for option in options:
            key, _, value = option.partition(" ")
            if key == "rows":
                rows = [n for span in value.split(",") for n in _span(span.strip())]
            elif key == "width":
                width = int(value)
            else:
                raise ValueError(f"unknown sample option '{key}' in '{text}' (rows, width)")
        return cls(command, rows, width)


def _span(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def files() -> list[Path]:
    return [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.exists()]


def output(command: str) -> str:
    """What the command prints on stdout, run as a user runs it (`ablate` = `python -m ablate`)."""
    argv = shlex.split(command)
    if argv[0] == "ablate":
        argv = [sys.executable, "-m", "ablate", *argv[1:]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"`{command}` exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def render(spec: Spec) -> str:
    """The sample block: `$ command`, then the output's header and the kept rows, `  ...` for a gap."""
    lines = output(spec.command).rstrip("\n").splitlines()
    if spec.width is not None:
        lines = [line[:spec.width] for line in lines]
    if spec.rows is not None:
        header, body = lines[:1], lines[1:]
        kept, last = list(header), 0
        for n in spec.rows:
            if n > len(body):
                raise ValueError(f"`{spec.command}` prints {len(body)} rows, not {n}")
            if n != last + 1:
                kept.append("  ...")
            kept.append(body[n - 1])
            last = n
        if last < len(body):
            kept.append("  ...")
        lines = kept
    return "\n".join([f"$ {spec.command}", *(line.rstrip() for line in lines)]) + "\n"


def check(path: Path) -> list[tuple[str, str, str]]:
    """(command, in the file, generated now) of each sample of `path`."""
    return [(m["spec"], m["block"], render(Spec.parse(m["spec"]))) for m in MARKER.finditer(path.read_text())]


def update(path: Path) -> int:
    """Rewrite the samples of `path`; returns how many changed."""
    text = path.read_text()
    changed = 0

    def replace(m: re.Match[str]) -> str:
        nonlocal changed
        new = render(Spec.parse(m["spec"]))
        changed += new != m["block"]
        return f"<!-- sample: {m['spec']} -->\n```\n{new}```"

    path.write_text(MARKER.sub(replace, text))
    return changed


if __name__ == "__main__":
    for p in files():
        print(f"{p.relative_to(ROOT)}: {update(p)} sample(s) rewritten")
