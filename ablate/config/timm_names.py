"""timm model names, checked without importing timm when the name list is cached (importing it takes 2.5 s)."""

from __future__ import annotations

import json
from typing import Any

from .errors import StudyError, did_you_mean
from .paths import timm_names_path


def check_timm_name(name: Any, file: str, where: str) -> None:
    names = timm_model_names()
    if not isinstance(name, str) or name not in names:
        raise StudyError(file, where, f"unknown timm model '{name}'{did_you_mean(name, names)}")


def timm_model_names() -> list[str]:
    """timm's model names, cached per timm version (listing them means importing timm: 2.5 s)."""
    try:
        return json.loads(timm_names_path().read_text())
    except (OSError, ValueError):
        pass
    import timm

    return sorted(timm.list_models())


def remember_timm_names(names: list[str]) -> None:
    """Cache the name list, only once a study has been found valid (a bad study writes nothing)."""
    path = timm_names_path()
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(names))
        tmp.replace(path)
    except OSError:
        pass
