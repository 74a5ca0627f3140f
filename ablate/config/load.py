"""Study files: YAML -> `extends` -> `--set` overrides -> validation -> expanded variants.

Every user mistake ends as one `StudyError` (`<file>: <field path>: <problem>`); nothing here
writes anywhere, and nothing here imports torch or timm (validation stays fast).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import StudyError, did_you_mean, from_validation, join
from .net import NetConfig, without_defaults
from .presets import PRESETS, preset_fields
from .study import DataSpec, Recipe, Reference, Study

NET_FIELDS = tuple(NetConfig.model_fields)
SECTIONS = ("recipe", "data", "model")  # dotted prefixes a step's `set:` may use


# ---------------------------------------------------------------- YAML


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


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) in `over` replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_raw(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A study file with its `extends:` chain merged in (child wins)."""
    path = path.resolve() if _chain else path
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise StudyError(str(path), "extends", "must be the path of another study file")
    target = (path.parent / parent).resolve()
    if target in _chain or target == path.resolve():
        raise StudyError(str(path), "extends", f"'{parent}' extends itself (cycle)")
    if not target.exists():
        raise StudyError(str(path), "extends", f"'{parent}' not found (looked for {target})")
    if not target.is_file():
        raise StudyError(str(path), "extends", f"'{parent}' is not a regular file (a folder or a device)")
    return deep_merge(load_raw(target, (*_chain, path.resolve())), data)


def _chain(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file, its own YAML) of a study file and each file up its `extends:` chain, the study file first."""
    out: list[tuple[str, dict[str, Any]]] = []
    current: Path | None = path
    while current is not None and len(out) < 50:
        data = read_yaml(current)
        out.append((str(current), data))
        parent = data.get("extends")
        current = (current.resolve().parent / parent).resolve() if isinstance(parent, str) and parent else None
    return out


def _blame(err: StudyError, path: Path, overrides: list[str]) -> StudyError:
    """A problem at a field the study file inherits (and does not set itself, nor --set) is reported under
    the `extends:` parent that wrote it."""
    import re

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


# ---------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One expanded variant: what is built, counted and trained (once per seed)."""

    index: int
    name: str
    group: str | None
    net: NetConfig | None  # the network at the paper's scale (3 channels, 1000 classes); None for timm
    train_net: NetConfig | None  # after `scale`, with the data's channels and classes
    timm: str | None  # a timm model name instead of a NetConfig
    recipe: Recipe
    data: DataSpec
    reference: Reference | None
    id: str
    # What differs from the variant it is compared with (the previous step, or the base model for
    # variants/grid points): {"depths": [old, new], "recipe.opt": [old, new], ...}; see `config_changes`.
    changes: dict[str, tuple[Any, Any]] | None = None
    # `match:` solved: {"metric": "gflops", "target": 4.47, "multiplier": 1.23, "achieved": 4.46, "tolerance": 0.02}
    match: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return "timm" if self.timm else "ablate"

    def resolved(self) -> dict[str, Any]:
        """Flat view of what was built and how it was trained: network fields (paper scale, after the recipe's
        network overrides), `recipe.<field>` and `data.<field>`; a timm model appears as `timm`."""
        out: dict[str, Any] = dict(self.net.canonical()) if self.net else {"timm": self.timm}
        out.update({f"recipe.{k}": v for k, v in self.recipe.model_dump(mode="json").items()})
        out.update({f"data.{k}": v for k, v in self.data.model_dump(mode="json").items()})
        return out

    def trial_id(self, seed: int) -> str:
        return f"{self.id}-s{seed}"


@dataclass(frozen=True)
class LoadedStudy:
    file: str
    study: Study
    variants: list[Variant]
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def kind(self) -> str:
        s = self.study
        if s.search is not None:
            return "search"
        return "steps" if s.steps else "variants" if s.variants else "grid" if s.grid else "single"


def load_study(path: str | Path, overrides: list[str] | None = None) -> LoadedStudy:
    """Read, merge, override, validate and expand a study file. Raises StudyError only (naming the
    `extends:` parent when the problem is in what the study inherits)."""
    try:
        return _load_study(Path(path), list(overrides or []))
    except StudyError as e:
        raise _blame(e, Path(path), list(overrides or [])) from None
    except RecursionError:
        raise StudyError(str(path), "", "nested too deeply") from None


def _load_study(path: Path, overrides: list[str]) -> LoadedStudy:
    file = str(path)
    raw = apply_overrides(load_raw(path), list(overrides or []), file)
    try:
        study = Study.model_validate(raw)
    except ValidationError as e:
        raise from_validation(e, file, "", Study) from None
    given = [k for k in ("steps", "variants", "grid", "search") if raw.get(k)]
    if len(given) > 1:
        raise StudyError(file, given[1], f"a study has one of steps:, variants:, grid:, search: "
                         f"(this one also has {given[0]}:)")
    if study.search is not None:
        _check_search(study, raw, file)
    for key, values in study.grid.items():
        if not values:
            raise StudyError(file, f"grid.{key}", "empty list: give at least one value")
    _check_count(study, file)
    variants = _with_changes(_matched(_expand(study, raw, file), study, file), study)
    if study.exclude:
        known = [v.name for v in variants]
        for i, name in enumerate(study.exclude):
            if name not in known:
                raise StudyError(file, f"exclude[{i}]", f"no variant named '{name}'{did_you_mean(name, known)}")
        variants = [v for v in variants if v.name not in study.exclude]
        if not variants:
            raise StudyError(file, "exclude", f"leaves no variant to run (it names all {len(known)})")
    ids: dict[str, str] = {}
    for v in variants:
        if v.id in ids:  # one id = one trial per seed: a second variant would silently share the first one's
            where = "grid" if study.grid else "steps" if study.steps else "variants"
            why = ("at equal cost a change of widths alone is no change: `exclude` one of them" if v.match else
                   "a recipe value may override a network field")
            raise StudyError(file, where, f"'{v.name}' and '{ids[v.id]}' resolve to "
                             f"the same network, data and recipe ({why})")
        ids.setdefault(v.id, v.name)
    names: dict[str, int] = {}
    for v in variants:
        if v.name in names:
            where = "grid" if study.grid else f"{'steps' if study.steps else 'variants'}[{v.index}].name"
            raise StudyError(file, where, f"duplicate variant name '{v.name}' (also variant {names[v.name]})")
        names[v.name] = v.index
    if any(v.timm for v in variants):
        _remember_timm_names(timm_model_names())
    return LoadedStudy(file=file, study=study, variants=variants, raw=raw)


def _expand(study: Study, raw: dict[str, Any], file: str) -> list[Variant]:
    base = _State(net=dict(study.model), recipe=dict(raw.get("recipe") or {}), data=dict(raw.get("data") or {}))
    resolve_net(base.net, file, "model")  # a broken base model is reported as such, not per variant
    out: list[Variant] = []
    specs = study.steps or study.variants
    state = base
    for i, spec in enumerate(specs):
        where = f"{'steps' if study.steps else 'variants'}[{i}]"
        state = (state if study.steps else base).apply(spec.model, spec.set, file, where)
        where = f"{where}.model" if spec.model is not None and not spec.set else f"{where}.set"
        out.append(_variant(study, state, i, spec.name, spec.group, spec.reference, file, where))
    if specs:
        return out
    grid = study.grid
    if study.search is not None:
        if study.search.sampler != "grid":
            return []  # variants are sampled while the study runs: see `search_variant`
        grid = dict(study.search.space)  # every value a list: checked by _check_search
    if grid:
        keys = list(grid)
        for i, combo in enumerate(itertools.product(*(grid[k] for k in keys))):
            changes = dict(zip(keys, combo, strict=True))
            state = base.apply(None, changes, file, "grid")
            name = ",".join(f"{k.split('.')[-1]}={_show(v)}" for k, v in changes.items())
            out.append(_variant(study, state, i, name, "grid", None, file, "grid"))
    else:
        name = str(study.model.get("preset") or study.model.get("timm") or study.name)
        out.append(_variant(study, base, 0, name, None, None, file, "model"))
    return out


def config_changes(before: Variant | None, after: Variant) -> dict[str, tuple[Any, Any]]:
    """Every resolved field (network, `recipe.*`, `data.*`) whose value differs between two variants."""
    if before is None:
        return {}
    a, b = before.resolved(), after.resolved()
    changes = {k: (a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)}
    # Step milestones only act under the step schedule: between two non-step schedules they are not a change,
    # and a switch to or from `step` is already the `recipe.sched` change.
    if "recipe.sched" in changes or a.get("recipe.sched") != "step":
        changes.pop("recipe.decay_milestones", None)
    return changes


def _with_changes(variants: list[Variant], study: Study) -> list[Variant]:
    """Steps are compared with the previous step; variants and grid points with the first variant."""
    import dataclasses

    out = []
    for i, v in enumerate(variants):
        before = (variants[i - 1] if study.steps else variants[0]) if i > 0 else None
        out.append(dataclasses.replace(v, changes=config_changes(before, v)))
    return out


def changes_text(changes: dict[str, tuple[Any, Any]] | None, limit: int = 6) -> str:
    """`depths [3,4,6,3]→[3,3,9,3]; kernel_size 3→7`; a recipe preset switch is shown as one item
    (`recipe classic→modern (+13 recipe fields)`), and more than `limit` items end in `(+N more)`."""
    if not changes:
        return ""
    items = dict(changes)
    parts = []
    if "recipe.preset" in items:
        old, new = items.pop("recipe.preset")
        rest = [k for k in items if k.startswith("recipe.")]
        for k in rest:
            items.pop(k)
        parts.append(f"recipe {old}→{new}" + (f" (+{len(rest)} recipe fields)" if rest else ""))
    parts += [f"{k} {_show(a)}→{_show(b)}" for k, (a, b) in items.items()]
    more = len(parts) - limit
    return "; ".join(parts[:limit]) + (f"; (+{more} more)" if more > 0 else "")


def search_variant(loaded: LoadedStudy, params: dict[str, Any], index: int) -> Variant:
    """The variant a search trial's sampled `params` describe (same naming and id as a grid point)."""
    study, file = loaded.study, loaded.file
    base = _State(net=dict(study.model), recipe=dict(loaded.raw.get("recipe") or {}),
                  data=dict(loaded.raw.get("data") or {}))
    state = base.apply(None, params, file, "search.space")
    name = ",".join(f"{k.split('.')[-1]}={_show(v)}" for k, v in params.items())
    v = _variant(study, state, index, name, "search", None, file, "search.space")
    return _matched([v], study, file, reference=resolve_net(dict(study.model), file, "model")[0])[0]


def _check_search(study: Study, raw: dict[str, Any], file: str) -> None:
    """Every corner of the space must make a valid variant: fail at load time, not mid-search."""
    from .study import Range

    search = study.search
    assert search is not None
    if search.sampler == "grid" and search.bounded:
        raise StudyError(file, "search.flops" if search.flops is not None else "search.params",
                         "cost bounds need a sampler that can ask again (tpe or random); grid trains every point")
    if search.sampler == "grid":
        for key, dim in search.space.items():
            if isinstance(dim, Range):
                raise StudyError(file, f"search.space.{key}", "the grid sampler needs a list of values")
    base = _State(net=dict(study.model), recipe=dict(raw.get("recipe") or {}), data=dict(raw.get("data") or {}))
    for key, dim in search.space.items():
        if isinstance(dim, list) and not dim:
            raise StudyError(file, f"search.space.{key}", "empty list: give at least one value")
        values = dim if isinstance(dim, list) else [dim.low, dim.high]
        for value in values:
            if isinstance(dim, Range) and dim.is_int:
                value = int(value)
            state = base.apply(None, {key: value}, file, "search.space")
            _variant(study, state, 0, "check", "search", None, file, "search.space")


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v, separators=(",", ":")) if isinstance(v, list | dict) else str(v)


@dataclass(frozen=True)
class _State:
    net: dict[str, Any]
    recipe: dict[str, Any]
    data: dict[str, Any]

    def apply(self, model: dict[str, Any] | None, changes: dict[str, Any], file: str, where: str) -> _State:
        net = dict(model) if model is not None else dict(self.net)
        recipe, data = dict(self.recipe), dict(self.data)
        for key, value in changes.items():
            head, dot, rest = key.partition(".")
            if dot and head in SECTIONS:
                target = {"recipe": recipe, "data": data, "model": net}[head]
                target[rest] = value
            elif dot:
                raise StudyError(file, f"{where}.set.{key}", f"dotted keys start with one of {', '.join(SECTIONS)}")
            elif key in NET_FIELDS or key in ("preset", "timm"):
                if key in NET_FIELDS and "timm" in net:
                    raise StudyError(file, f"{where}.set.{key}", f"cannot set network fields on timm model "
                                     f"'{net['timm']}'")
                net[key] = value
            else:
                raise StudyError(file, f"{where}.set.{key}", f"unknown network field '{key}'"
                                 f"{did_you_mean(key, NET_FIELDS)}; or use recipe.<field> / data.<field>")
        return _State(net=net, recipe=recipe, data=data)


def _variant(study: Study, state: _State, index: int, name: str, group: str | None,
             reference: Reference | None, file: str, where: str) -> Variant:
    """`where` is the path a problem of this variant is reported at: `model`, `grid` or `steps[i].set`."""
    sub = (lambda section: section) if where == "model" else (lambda section: f"{where}.{section}")
    try:
        recipe = Recipe.model_validate(state.recipe)
    except ValidationError as e:
        raise from_validation(e, file, sub("recipe"), Recipe) from None
    try:
        data = DataSpec.model_validate(state.data)
    except ValidationError as e:
        raise from_validation(e, file, sub("data"), DataSpec) from None
    net, timm_name = resolve_net(state.net, file, where)
    train_net = None
    if net is not None:
        overrides: dict[str, Any] = {}
        if recipe.drop_path is not None and net.drop_path == 0:  # a network's own rate wins
            overrides["drop_path"] = recipe.drop_path
        if recipe.layer_scale is not None:
            overrides["layer_scale"] = recipe.layer_scale
        net = net.model_copy(update=overrides) if overrides else net
        train_net = _scaled(net, study, data, file)
        _check_size(net, study.measure.flops_image_size, file, "measure.flops_image_size", name)
        _check_size(train_net, data.resolved("image_size"), file, "data.image_size", name)
    return Variant(index=index, name=name, group=group, net=net, train_net=train_net, timm=timm_name,
                   recipe=recipe, data=data, reference=reference, id=_digest(net, train_net, timm_name, data, recipe))


def _digest(net: NetConfig | None, train_net: NetConfig | None, timm_name: str | None, data: DataSpec,
            recipe: Recipe) -> str:
    # Fields at their default stay out of the hash (see NetConfig.identity): adding a field whose default
    # reproduces the old behaviour keeps every existing id, so finished trials stay finished.
    ident = {
        "net": net.identity() if net else {"timm": timm_name},
        "train": train_net.identity() if train_net else {"in": data.resolved("in_chans"),
                                                          "classes": data.resolved("num_classes")},
        "data": without_defaults(data.model_dump(mode="json", exclude={"root"}), DataSpec),
        "recipe": without_defaults(recipe.model_dump(mode="json"), Recipe),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]


def _matched(variants: list[Variant], study: Study, file: str, reference: NetConfig | None = None) -> list[Variant]:
    """Variants with a `match:` (their own, or the study's) get the widths that put them on the target cost.

    The solve counts networks (torch, in forked workers) only the first time: solutions are cached by what
    determines them (see `ablate.measure.isocost`). The matched network is the variant (its id, its trained
    network after `scale:`); the multiplier and the achieved cost are kept in `Variant.match`. A `reference`
    target is the cost of `reference` (default: the first variant, unmatched)."""
    import dataclasses
    from functools import partial

    specs = study.steps or study.variants
    todo = []
    for v in variants:
        spec = specs[v.index].match if specs and v.group != "search" else None
        m = spec or study.match
        if m is None or v.name in study.exclude:
            continue
        where = f"{'steps' if study.steps else 'variants'}[{v.index}].match" if spec else "match"
        if v.net is None:
            raise StudyError(file, where, f"variant '{v.name}' is timm model '{v.timm}': only a network of "
                             "NetConfig fields can be matched (its widths are scaled)")
        todo.append((v, m, where))
    if not todo:
        return variants
    from ablate.measure import isocost

    size = study.measure.flops_image_size
    jobs = []
    for v, m, where in todo:
        target = m.target
        if target == "reference":
            ref = reference if reference is not None else variants[0].net
            if ref is None:
                raise StudyError(file, where, "`reference` is the first variant's cost, and it is a timm model")
            target = isocost.reference_cost(_paper(ref), m.metric, size)
        jobs.append(isocost.Job(net=_paper(v.net).model_dump(mode="json"), metric=m.metric, target=float(target),
                                tolerance=m.tolerance, divisor=m.divisor, image_size=size,
                                train_of=partial(_train_of, study, v.data, file)))
    solutions = isocost.solve_all(jobs)
    out = {v.index: v for v in variants}
    for (v, m, where), job, sol in zip(todo, jobs, solutions, strict=True):
        if sol.error is not None:
            shown = f"{job.target:.4g} GFLOPs" if m.metric == "gflops" else f"{job.target / 1e6:.4g} M parameters"
            raise StudyError(file, where, f"variant '{v.name}' cannot be matched to {shown} within "
                             f"{100 * m.tolerance:g} %: {sol.error}")
        net = sol.apply(v.net)
        train_net = _scaled(net, study, v.data, file)
        info = {"metric": m.metric, "target": job.target, "multiplier": sol.multiplier, "achieved": sol.achieved,
                "tolerance": m.tolerance}
        out[v.index] = dataclasses.replace(v, net=net, train_net=train_net, match=info,
                                           id=_digest(net, train_net, None, v.data, v.recipe))
    return [out[v.index] for v in variants]


def _paper(net: NetConfig) -> NetConfig:
    return net.model_copy(update={"in_chans": 3, "num_classes": 1000})


def _train_of(study: Study, data: DataSpec, file: str, net: NetConfig) -> tuple[NetConfig, int]:
    """The network as trained (after `scale:`) and its image size: counted by the solve's workers ahead."""
    return _scaled(net, study, data, file), data.resolved("image_size")


def resolve_net(fields: dict[str, Any], file: str, prefix: str) -> tuple[NetConfig | None, str | None]:
    """A `model:` mapping (preset + fields, or timm) -> NetConfig or timm name; errors under `prefix`."""
    if "timm" in fields:
        extra = sorted(set(fields) - {"timm"})
        if extra:
            raise StudyError(file, join(prefix, [extra[0]]),
                             "a timm model takes no other fields (it is measured as timm builds it)")
        check_timm_name(fields["timm"], file, join(prefix, ["timm"]))
        return None, fields["timm"]
    values = dict(fields)
    name = values.pop("preset", None)
    if name is not None:
        if name not in PRESETS:
            raise StudyError(file, join(prefix, ["preset"]),
                             f"unknown preset '{name}'{did_you_mean(name, list(PRESETS))}; valid: {', '.join(PRESETS)}")
        values = {**preset_fields(name), **values}
    _check_numbers(values, NetConfig, file, prefix)
    try:
        return NetConfig.model_validate(values), None
    except ValidationError as e:
        raise from_validation(e, file, prefix, NetConfig) from None


def _check_count(study: Study, file: str) -> None:
    """A grid's product is counted before it is expanded (a typo must not run for minutes at gigabytes)."""
    from .checks import MAX_VARIANTS

    space = study.grid or (study.search.space if study.search and study.search.sampler == "grid" else {})
    where = "grid" if study.grid else "search.space"
    n = math.prod(len(v) for v in space.values() if isinstance(v, list)) if space else 0
    n = max(n, len(study.steps), len(study.variants))
    if n > MAX_VARIANTS:
        raise StudyError(file, where if space else ("steps" if study.steps else "variants"),
                         f"{n:,} variants: more than {MAX_VARIANTS:,}; split the study or shrink the lists")


def _check_numbers(values: dict[str, Any], model: Any, file: str, prefix: str) -> None:
    """No YAML boolean (`kernel_size: yes` would become 1) and no inf/nan where `model` wants a number."""
    from .checks import yaml_boolean_problem

    for key, value in values.items():
        field = model.model_fields.get(key)
        if field is None:
            continue
        problem = yaml_boolean_problem(value, field.annotation)
        items = value if isinstance(value, list | tuple) else [value]
        if not problem and any(isinstance(x, float) and not math.isfinite(x) for x in items):
            problem = f"must be a finite number (got {value})"
        if problem:
            raise StudyError(file, join(prefix, [key]), problem)


def _check_size(net: NetConfig, size: int, file: str, where: str, name: str) -> None:
    sizes = net.feature_sizes(size)
    if min(sizes) < 1:
        stage = next(i for i, n in enumerate(sizes) if n < 1) + 1
        raise StudyError(file, where, f"{size} px is too small for variant '{name}': its stage {stage} would get "
                         f"no pixels (feature sizes {sizes}); use a larger image size")


def make_divisible(value: float, divisor: int) -> int:
    # timm.layers.make_divisible does exactly this, but importing timm costs 2.5 s and this
    # module must stay torch-free so `ablate validate` and cached `ablate flops` are instant.
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def _scaled(net: NetConfig, study: Study, data: DataSpec, file: str) -> NetConfig:
    sc = study.scale
    update: dict[str, Any] = {"in_chans": data.resolved("in_chans"), "num_classes": data.resolved("num_classes")}
    if sc.width != 1.0:
        update["dims"] = tuple(make_divisible(d * sc.width, sc.divisor) for d in net.dims)
        if net.stem_width is not None:
            update["stem_width"] = make_divisible(net.stem_width * sc.width, sc.divisor)
    if sc.depth != 1.0:
        update["depths"] = tuple(max(1, math.floor(d * sc.depth + 0.5)) for d in net.depths)
    try:
        return NetConfig.model_validate({**net.model_dump(), **update})
    except ValidationError as e:
        err = from_validation(e, file, "", NetConfig)
        raise StudyError(file, "scale", f"width {sc.width} / depth {sc.depth} make an invalid network: "
                         f"{err.path}: {err.problem}") from None


# ---------------------------------------------------------------- timm names


def check_timm_name(name: Any, file: str, where: str) -> None:
    names = timm_model_names()
    if not isinstance(name, str) or name not in names:
        raise StudyError(file, where, f"unknown timm model '{name}'{did_you_mean(name, names)}")


def timm_model_names() -> list[str]:
    """timm's model names, cached per timm version (listing them means importing timm: 2.5 s)."""
    try:
        return json.loads(_timm_names_path().read_text())
    except (OSError, ValueError):
        pass
    import timm

    return sorted(timm.list_models())


def _timm_names_path() -> Path:
    from importlib.metadata import version

    from ablate.measure.counts import cache_dir

    return cache_dir().parent / f"timm-models-{version('timm')}.json"


def _remember_timm_names(names: list[str]) -> None:
    """Cache the name list, only once a study has been found valid (a bad study writes nothing)."""
    path = _timm_names_path()
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(names))
        tmp.replace(path)
    except OSError:
        pass


__all__ = ["LoadedStudy", "Variant", "load_study", "apply_overrides", "deep_merge"]
