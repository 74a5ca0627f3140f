"""Plug-ins: the modules a study names in `plugins:` (and those installed under the `ablate.plugins` entry-point
group) are imported before its variants are checked; what they register (config/registry.py) is then a name a
study may use. A variant that uses a registered name carries the source of the module that registered it in its
id (`sources`): editing the plug-in makes its trials new ones, and the variants that do not use it keep theirs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .errors import StudyError
from .net import ACTIVATIONS, BLOCKS, NORMS, STEMS
from .registry import KINDS, entry, names, record_model

ENTRY_POINT_GROUP = "ablate.plugins"


def import_plugins(plugins: list[str], file: str) -> None:
    """Import every installed entry-point plug-in, then each of `plugins` (a module name, looked for beside the
    study file first, or a .py file relative to it); a failure is a StudyError at `plugins[i]`."""
    _entry_points(file)
    folder = str(Path(file).resolve().parent)
    for i, spec in enumerate(plugins):
        where = f"plugins[{i}]"
        before = _timm_models()
        if not isinstance(spec, str) or not spec.strip():
            raise StudyError(file, where, "a module name (mypkg.blocks) or a .py file relative to the study")
        if spec.endswith(".py") and not (Path(folder) / spec).is_file():
            raise StudyError(file, where, f"no such file {Path(folder) / spec}")
        try:
            module = _import(spec, folder)
        except ModuleNotFoundError as e:
            raise StudyError(file, where, f"cannot import '{spec}': no module named '{e.name}' (a module name "
                             "beside the study file or installed, or a .py file relative to the study)") from None
        except Exception as e:  # a plug-in is user code: any failure is its author's one line
            raise StudyError(file, where, f"importing '{spec}' failed: {type(e).__name__}: {e}") from None
        for name in sorted((_timm_models() - before) | _timm_models(module)):  # registered with timm itself
            record_model(name, module)


def _timm_models(module: str | None = None) -> set[str]:
    """timm's model names; with `module`, those whose entry function that module defines (imported before,
    its models are no longer new to timm)."""
    timm = sys.modules.get("timm")  # a plug-in that registers a timm model has imported timm itself
    if timm is None:
        return set()
    if module is None:
        return set(timm.list_models())
    return {n for n in timm.list_models(module=module.rpartition(".")[2])
            if getattr(timm.models.model_entrypoint(n), "__module__", None) == module}


def _import(spec: str, folder: str) -> str:
    """Import one plug-in; returns its module name."""
    if spec.endswith(".py"):
        path = (Path(folder) / spec).resolve()
        name = "ablate_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:8] + "_" + path.stem
        if name not in sys.modules:
            loader = importlib.machinery.SourceFileLoader(name, str(path))
            module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
            sys.modules[name] = module
            try:
                loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        return name
    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.import_module(spec)
    return spec


def _entry_points(file: str) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:
            raise StudyError(file, "plugins", f"installed plug-in '{ep.name}' ({ep.value}, entry point group "
                             f"{ENTRY_POINT_GROUP}) failed to import: {type(e).__name__}: {e}") from None


BUILT_IN = {"norm": NORMS, "activation": ACTIVATIONS, "stem": STEMS, "block": BLOCKS, "model": ()}


def used(net: Any, timm_name: str | None) -> list[tuple[str, str]]:
    """(kind, name) of every plug-in-registered name a variant uses (a built-in name is ablate's own, always)."""
    pairs = [("model", timm_name)] if timm_name else []
    if net is not None:
        pairs += [("norm", net.norm), ("activation", net.activation), ("stem", net.stem), ("block", net.block)]
    return [(k, n) for k, n in pairs if n not in BUILT_IN[k] and entry(k, n) is not None]


def sources(net: Any, timm_name: str | None) -> list[str]:
    """The digests of the sources of the plug-in modules whose names the variant uses ([] for none): what they
    say, not where they are (a study folder moved elsewhere keeps its ids)."""
    modules = {entry(k, n).module for k, n in used(net, timm_name)}  # type: ignore[union-attr]
    return sorted({source_digest(m) for m in modules})


def source_digest(module: str) -> str:
    """sha256 of a module's source file (a package: every .py file under its folder)."""
    mod = sys.modules.get(module)
    path = Path(getattr(mod, "__file__", None) or "")
    if not path.is_file():
        return "no-source"
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def registered_names() -> dict[str, tuple[str, ...]]:
    return {kind: names(kind) for kind in KINDS}
