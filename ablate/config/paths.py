"""Where ablate caches things, in one torch-free place: $ABLATE_CACHE_DIR, else $XDG_CACHE_HOME/ablate, else
~/.cache/ablate. Under it: `counts/` (FLOPs and parameter counts), `match/` (solved `match:` widths), `data/`
(downloaded datasets) and the timm model-name list of each timm version."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Read at each call: tests and users may change the environment between calls."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("ABLATE_CACHE_DIR") or xdg / "ablate")


def counts_dir() -> Path:
    return cache_root() / "counts"


def match_dir() -> Path:
    return cache_root() / "match"


def data_dir() -> Path:
    return cache_root() / "data"


def timm_names_path() -> Path:
    """The cached list of timm's model names, one file per timm version (no import of timm)."""
    from importlib.metadata import version

    return cache_root() / f"timm-models-{version('timm')}.json"
