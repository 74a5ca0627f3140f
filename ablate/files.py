"""Writing a file whole or not at all: through a temp file beside it and `os.replace`, so a full disk, a quota
or a read-only target leaves the old file (or none) and no half-written one, and the error names the file
meant, never the temp file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` writes the content to a temp path; it then replaces `path`. Any OSError names `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # nothing half-written left behind
        if isinstance(e, OSError):
            e.filename, e.filename2 = str(path), None  # the file meant, not the temp file (or none: pandas)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))
