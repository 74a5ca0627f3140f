"""Study files as data: YAML read strictly (one error line, never a traceback), `extends:` chains merged,
`--set` overrides applied, and a problem in an inherited field blamed on the parent file that wrote it."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import StudyError, join
from .study import Study


class _DuplicateKey(Exception):
    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key, self.problem = key, problem


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML silently keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged by construct_mapping (own keys win)
            continue
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _DuplicateKey(f"line {line}", f"a key must be a plain value, not a {type(key).__name__}") from None
        if key in seen:
            raise _DuplicateKey(str(key), f"given twice (lines {seen[key]} and {line}); YAML would keep only the last")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


MAX_STUDY_BYTES = 1 << 20  # a study file is a page of YAML: a bigger "study" is some other file


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        if path.exists() and not path.is_file():
            raise StudyError(str(path), "", "not a regular file (a folder or a device); a study is a YAML file")
        if path.exists() and path.stat().st_size > MAX_STUDY_BYTES:
            raise StudyError(str(path), "", f"{path.stat().st_size:,} bytes: too big for a study file (at most "
                             f"{MAX_STUDY_BYTES:,}); is it the right file?")
        text = path.read_text()
    except FileNotFoundError:
        raise StudyError(str(path), "", "no such file") from None
    except UnicodeDecodeError:
        raise StudyError(str(path), "", "cannot read: not UTF-8 text (a study is a YAML file)") from None
    except OSError as e:
        raise StudyError(str(path), "", f"cannot read: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except _DuplicateKey as e:
        raise StudyError(str(path), e.key, e.problem) from None
    except RecursionError:
        raise StudyError(str(path), "", "invalid YAML: nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        what = getattr(e, "problem", None) or str(e)
        raise StudyError(str(path), where, f"invalid YAML: {what}") from None
    check_expansion(data, str(path), "")
    if data is None:
        raise StudyError(str(path), "", "the file is empty; a study needs at least `name:`")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise StudyError(str(path), "", f"a study is a mapping of keys (name:, model:, ...), not a {kind}")
    if not any(isinstance(k, str) and (k in Study.model_fields or k == "extends") for k in data):
        # some other YAML file: say so, without echoing what it holds
        raise StudyError(str(path), "", f"not a study file: none of its {len(data)} keys is a study field (name:, "
                         "model:, data:, recipe:, steps:, variants:, grid:, search:, extends:, ...)")
    return data


MAX_VALUES = 100_000  # values in a study with its YAML aliases expanded: a page of YAML holds a few hundred


def check_expansion(data: Any, file: str, where: str) -> None:
    """Refuse YAML whose aliases expand to more than MAX_VALUES values (an alias bomb: a few hundred bytes that
    every later step - merging, validation, expansion - would copy out to gigabytes). Counted without expanding:
    each shared node is sized once."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int = 0) -> int:
        if not isinstance(node, dict | list) or depth > 200:
            return 1
        if id(node) not in sizes:
            sizes[id(node)] = MAX_VALUES + 1  # until counted: a node that holds itself expands for ever
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            sizes[id(node)] = 1 + sum(min(size(x, depth + 1), MAX_VALUES + 1) for x in items)
        return sizes[id(node)]

    if size(data) > MAX_VALUES:
        raise StudyError(file, where, f"its YAML aliases (&name / *name) expand to more than {MAX_VALUES:,} values; "
                         "a study is a page of settings")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) in `over` replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


MAX_EXTENDS = 200  # files in one `extends:` chain
KINDS = ("steps", "variants", "grid", "search")  # what a study lists: one of them


def extend(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A child study merged over its parent: deep merge, except that a child giving one of `KINDS` (null
    included) replaces the parent's list of variants, whatever its kind (a grid may extend a roadmap); a kind
    left null is none."""
    if any(k in child for k in KINDS):
        parent = {k: v for k, v in parent.items() if k not in KINDS}
    merged = deep_merge(parent, child)
    return {k: v for k, v in merged.items() if not (k in KINDS and v is None)}


def load_raw(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A study file with its `extends:` chain merged in (child wins)."""
    path = path.resolve() if _chain else path
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return {k: v for k, v in data.items() if not (k in KINDS and v is None)}
    if not isinstance(parent, str) or not parent:
        raise StudyError(str(path), "extends", "must be the path of another study file")
    target = (path.parent / parent).resolve()
    if len(_chain) + 1 >= MAX_EXTENDS:
        raise StudyError(str(path), "extends", f"a chain of more than {MAX_EXTENDS} study files; is there a loop?")
    if target in _chain or target == path.resolve():
        raise StudyError(str(path), "extends", f"'{parent}' extends itself (cycle)")
    if not target.exists():
        raise StudyError(str(path), "extends", f"'{parent}' not found (looked for {target})")
    if not target.is_file():
        raise StudyError(str(path), "extends", f"'{parent}' is not a regular file (a folder or a device)")
    return extend(load_raw(target, (*_chain, path.resolve())), data)


def _chain(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file, its own YAML) of a study file and each file up its `extends:` chain, the study file first."""
    out: list[tuple[str, dict[str, Any]]] = []
    current: Path | None = path
    while current is not None and len(out) < MAX_EXTENDS:  # the whole chain (load_raw allows no longer one)
        data = read_yaml(current)
        out.append((str(current), data))
        parent = data.get("extends")
        current = (current.resolve().parent / parent).resolve() if isinstance(parent, str) and parent else None
    return out


def blame(err: StudyError, path: Path, overrides: list[str]) -> StudyError:
    """A problem at a field the study file inherits (and does not set itself, nor --set) is reported under
    the `extends:` parent that wrote it."""
    if err.file != str(path) or not err.path or err.path.startswith(("--set", "line ", "extends")):
        return err
    given = [join("", [int(x) if x.isdigit() else x for x in o.partition("=")[0].strip().split(".")])
             for o in overrides]  # steps.1.set.x -> steps[1].set.x
    if any(err.path == key or err.path.startswith((f"{key}.", f"{key}[")) for key in given):
        return err
    try:
        chain = _chain(path)
    except StudyError:
        return err
    tokens = re.findall(r"\[\d+\]|[^.\[\]]+", err.path)

    def match(node: Any, rest: list[str]) -> tuple[int, bool]:
        """How many tokens of the path this file defines, and whether a value of it replaces its parents'."""
        if not rest:
            return 0, not isinstance(node, dict)
        if isinstance(node, dict):
            for n in range(len(rest), 0, -1):  # dotted keys (`set: {recipe.lr: ...}`) first
                key = ".".join(rest[:n])
                if key in node:
                    depth, final = match(node[key], rest[n:])
                    return n + depth, final
            return 0, False
        if isinstance(node, list):  # a list replaces the parents' list
            i = int(rest[0][1:-1]) if rest[0].startswith("[") else -1
            if 0 <= i < len(node):
                depth, _ = match(node[i], rest[1:])
                return 1 + depth, True
            return 0, True
        return 0, True

    owner, best = chain[0][0], -1
    for file, data in chain:
        depth, final = match(data, tokens)
        if depth > best:
            owner, best = file, depth
        if final and depth > 0:
            break
    if owner == err.file:
        return err
    return StudyError(owner, err.path, f"{err.problem} (inherited by {err.file} through extends:)")


def apply_overrides(data: dict[str, Any], overrides: list[str], file: str) -> dict[str, Any]:
    """`a.b=value` (value parsed as YAML) -> data['a']['b'] = value; `steps.2.name` indexes lists."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise StudyError(file, f"--set {item}", "expected KEY=VALUE, e.g. --set recipe.epochs=1")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        check_expansion(value, file, f"--set {key.strip()}")
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise StudyError(file, f"--set {where}", f"no list item {part} (the list has {len(node)})")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise StudyError(file, f"--set {where}", f"'{'.'.join(parts[:i])}' is a value, not a section")
    return data
