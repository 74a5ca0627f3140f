"""timm model names, checked without importing timm when the name list is cached (importing it takes 2.5 s)."""

from __future__ import annotations

import json
import sys
from typing import Any

from .errors import StudyError, did_you_mean
from .paths import timm_names_path
from .registry import entry

# timm families whose constructors take per-stage depths and widths (`scale:` applies to them: nn/timm_scale.py)
SCALABLE = {"resnet": "layers, channels", "convnext": "depths, dims"}


def check_timm_name(name: Any, file: str, where: str) -> None:
    names = timm_model_names()
    if isinstance(name, str) and (name in names or entry("model", name) is not None):
        return
    if isinstance(name, str) and "timm" in sys.modules and sys.modules["timm"].is_model(name):
        return  # registered with timm by a plug-in (or by code that imported timm first)
    raise StudyError(file, where, f"unknown timm model '{name}'{did_you_mean(name, names)} (a plug-in may "
                     "register one: docs/plugins.md)")


def timm_family(name: str) -> str | None:
    """The timm family (module) of model `name` whose arguments `scale:` knows, or None (imports timm)."""
    import timm

    for family in SCALABLE:
        if name in timm.list_models(module=family):
            return family
    return None


def check_timm_scale(name: str, file: str) -> None:
    """`scale:` applies to a timm model only when its constructor takes per-stage depths and widths."""
    if timm_family(name) is None:
        raise StudyError(file, "scale", f"timm model '{name}' cannot be scaled: only timm's "
                         f"{' and '.join(SCALABLE)} models take per-stage depths and widths; give it its own "
                         "study without `scale:`, or `exclude:` it")


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
    names = [n for n in names if entry("model", n) is None]  # a plug-in's model is a name only with the plug-in
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(names))
        tmp.replace(path)
    except OSError:
        pass
