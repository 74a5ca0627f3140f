"""Study files: YAML -> `extends` -> `--set` overrides -> validation -> expanded variants.

Every user mistake ends as one `StudyError` (`<file>: <field path>: <problem>`); nothing here
writes anywhere, and nothing here imports torch or timm (validation stays fast).

The parts live beside this module: reading the files (`yamlfile`), the types (`variant`), whole-study checks
(`load_checks`), timm's model names (`timm_names`) and the cache paths (`paths`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .depth import keep_steps, rounded
from .errors import StudyError, did_you_mean, from_validation, join
from .load_checks import (
    check_count,
    check_grid_lists,
    check_numbers,
    check_objective,
    check_one_list,
    check_size,
    check_unique,
    excluded,
)
from .net import NetConfig, make_divisible, without_defaults
from .plugins import import_plugins, sources
from .presets import PRESETS, preset_fields
from .steps import Reference
from .study import DataSpec, Recipe, Study
from .timm_names import check_timm_name, check_timm_scale, remember_timm_names, timm_model_names
from .variant import LoadedStudy, Variant, config_changes, judged_against, show_value
from .yamlfile import apply_overrides, blame, load_raw

NET_FIELDS = tuple(NetConfig.model_fields)  # NetConfig and NET_FIELDS are looked up here (a test grows the schema)
SECTIONS = ("recipe", "data", "model")  # dotted prefixes a step's `set:` may use


def load_study(path: str | Path, overrides: list[str] | None = None) -> LoadedStudy:
    """Read, merge, override, validate and expand a study file. Raises StudyError only (naming the
    `extends:` parent when the problem is in what the study inherits)."""
    try:
        return _load_study(Path(path), list(overrides or []))
    except StudyError as e:
        raise blame(e, Path(path), list(overrides or [])) from None
    except RecursionError:
        raise StudyError(str(path), "", "nested too deeply") from None


def _load_study(path: Path, overrides: list[str]) -> LoadedStudy:
    file = str(path)
    raw = apply_overrides(load_raw(path), list(overrides or []), file)
    try:
        study = Study.model_validate(raw)
    except ValidationError as e:
        raise from_validation(e, file, "", Study) from None
    import_plugins(study.plugins, file)  # before any name is checked: what they register is a valid name
    check_one_list(raw, file)
    if study.search is not None:
        _check_search(study, raw, file)
    check_grid_lists(study, file)
    check_count(study, file)
    check_objective(study, file)
    # `changes` after `exclude:`: a step is compared with the step before it in what is run, not with a left-out one
    variants = _with_changes(excluded(_depth_kept(_matched(_expand(study, raw, file), study, file), study, file),
                                      study, file), study, file)
    check_unique(variants, study, file)
    if any(v.timm for v in variants):
        remember_timm_names(timm_model_names())
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
            state = base.apply(None, changes, file, "grid", set_key=False)
            name = ",".join(f"{k.split('.')[-1]}={show_value(v)}" for k, v in changes.items())
            out.append(_variant(study, state, i, name, "grid", None, file, "grid"))
    else:
        name = str(study.model.get("preset") or study.model.get("timm") or study.name)
        out.append(_variant(study, base, 0, name, None, None, file, "model"))
    return out


def _with_changes(variants: list[Variant], study: Study, file: str) -> list[Variant]:
    """Each variant's `changes` against the one it is judged against (`vs:`, else the previous step for steps,
    the first variant otherwise: `variant.judged_against`)."""
    import dataclasses

    variants = _with_vs(variants, study, file)
    against = judged_against(variants, "steps" if study.steps else "variants")
    return [dataclasses.replace(v, changes=config_changes(None if j is None else variants[j], v))
            for v, j in zip(variants, against, strict=True)]


def _with_vs(variants: list[Variant], study: Study, file: str) -> list[Variant]:
    """`vs:` of each step or variant, checked: the name of another variant that is run (not itself, not one
    that `exclude:` leaves out)."""
    import dataclasses

    specs = study.steps or study.variants
    names = [v.name for v in variants]
    out = []
    for v in variants:
        vs = specs[v.index].vs if specs else None
        if vs is not None:
            where = f"{'steps' if study.steps else 'variants'}[{v.index}].vs"
            if vs == v.name:
                raise StudyError(file, where, f"'{vs}' is this variant itself: name the one its change is judged "
                                 "against")
            if vs not in names:
                left = " (left out by exclude:)" if vs in study.exclude else did_you_mean(vs, names)
                raise StudyError(file, where, f"no variant named '{vs}'{left}")
        out.append(dataclasses.replace(v, vs=vs))
    return out


def search_variant(loaded: LoadedStudy, params: dict[str, Any], index: int) -> Variant:
    """The variant a search trial's sampled `params` describe (same naming and id as a grid point)."""
    study, file = loaded.study, loaded.file
    base = _State(net=dict(study.model), recipe=dict(loaded.raw.get("recipe") or {}),
                  data=dict(loaded.raw.get("data") or {}))
    state = base.apply(None, params, file, "search.space")
    name = ",".join(f"{k.split('.')[-1]}={show_value(v)}" for k, v in params.items())
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


@dataclass(frozen=True)
class _State:
    net: dict[str, Any]
    recipe: dict[str, Any]
    data: dict[str, Any]

    def apply(self, model: dict[str, Any] | None, changes: dict[str, Any], file: str, where: str,
              set_key: bool = True) -> _State:
        """`where` names what holds `changes`: `steps[i]` (its `set.` keys) or, with `set_key=False`, the grid."""
        at = f"{where}.set" if set_key else where
        net = dict(model) if model is not None else dict(self.net)
        recipe, data = dict(self.recipe), dict(self.data)
        for key, value in changes.items():
            head, dot, rest = key.partition(".")
            if dot and head in SECTIONS:
                target = {"recipe": recipe, "data": data, "model": net}[head]
                target[rest] = value
            elif dot:
                raise StudyError(file, f"{at}.{key}", f"dotted keys start with one of {', '.join(SECTIONS)}")
            elif key in NET_FIELDS or key in ("preset", "timm"):
                if key in NET_FIELDS and "timm" in net:
                    raise StudyError(file, f"{at}.{key}", f"cannot set network fields on timm model "
                                     f"'{net['timm']}'")
                net[key] = value
            else:
                raise StudyError(file, f"{at}.{key}", f"unknown network field '{key}'"
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
    train_net, timm_scale = None, _timm_scale(study, timm_name, name, file)
    if net is not None:
        overrides: dict[str, Any] = {}
        if recipe.drop_path is not None and net.drop_path == 0:  # a network's own rate wins
            overrides["drop_path"] = recipe.drop_path
        if recipe.layer_scale is not None:
            overrides["layer_scale"] = recipe.layer_scale
        net = net.model_copy(update=overrides) if overrides else net
        train_net = _scaled(net, study, data, file)
        check_size(net, study.measure.flops_image_size, file, "measure.flops_image_size", name)
        check_size(train_net, data.resolved("image_size"), file, "data.image_size", name)
    return Variant(index=index, name=name, group=group, net=net, train_net=train_net, timm=timm_name,
                   recipe=recipe, data=data, reference=reference, timm_scale=timm_scale,
                   id=_digest(net, train_net, timm_name, data, recipe, timm_scale))


def _timm_scale(study: Study, timm_name: str | None, name: str, file: str) -> dict[str, Any] | None:
    """`scale:` as a timm model's constructor takes it (nn/timm_scale.py), or None (no scale, no timm model, or
    a variant `exclude:` leaves out)."""
    sc = study.scale
    if timm_name is None or (sc.width == 1.0 and sc.depth == 1.0) or name in study.exclude:
        return None
    check_timm_scale(timm_name, file)
    return {"width": sc.width, "depth": sc.depth, "divisor": sc.divisor}


def _digest(net: NetConfig | None, train_net: NetConfig | None, timm_name: str | None, data: DataSpec,
            recipe: Recipe, timm_scale: dict[str, Any] | None = None) -> str:
    # Fields at their default stay out of the hash (see NetConfig.identity): adding a field whose default
    # reproduces the old behaviour keeps every existing id, so finished trials stay finished.
    ident = {
        "net": net.identity() if net else {"timm": timm_name},
        "train": train_net.identity() if train_net else {"in": data.resolved("in_chans"),
                                                          "classes": data.resolved("num_classes")},
        "data": without_defaults(data.model_dump(mode="json", exclude={"root"}), DataSpec),
        # micro_batch is how the global batch is reached (like the number of processes), not what is trained
        "recipe": without_defaults(recipe.model_dump(mode="json", exclude={"micro_batch"}), Recipe),
    }
    if timm_scale:  # an unscaled timm model keeps the id it had before `scale:` applied to timm models
        ident["train"]["scale"] = timm_scale
    plugins = sorted({*sources(net, timm_name), *(sources(train_net, None) if train_net else [])})
    if plugins:  # only a variant that uses a plug-in's name: editing the plug-in changes these ids alone
        ident["plugins"] = plugins
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


def _depth_kept(variants: list[Variant], study: Study, file: str) -> list[Variant]:
    """`scale.depth_rule: keep_steps`: the trained networks' depths from the study-wide map (config/depth.py)."""
    import dataclasses

    if study.scale.depth_rule != "keep_steps" or study.scale.depth == 1.0:
        return variants
    if study.search is not None:
        raise StudyError(file, "scale.depth_rule", "keep_steps maps the depths of the study's listed variants; a "
                         "search samples its networks one by one: use `round`")
    maps = keep_steps([v.net.depths for v in variants if v.net is not None], study.scale.depth)
    out = []
    for v in variants:
        if v.net is None or v.train_net is None:
            out.append(v)
            continue
        depths = tuple(maps[i][d] for i, d in enumerate(v.net.depths))
        train_net = NetConfig.model_validate({**v.train_net.model_dump(), "depths": depths})
        out.append(dataclasses.replace(v, train_net=train_net, id=_digest(v.net, train_net, None, v.data, v.recipe)))
    return out


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
    check_numbers(values, NetConfig, file, prefix)
    try:
        return NetConfig.model_validate(values), None
    except ValidationError as e:
        raise from_validation(e, file, prefix, NetConfig) from None


def _scaled(net: NetConfig, study: Study, data: DataSpec, file: str) -> NetConfig:
    sc = study.scale
    update: dict[str, Any] = {"in_chans": data.resolved("in_chans"), "num_classes": data.resolved("num_classes")}
    if sc.width != 1.0:
        update["dims"] = tuple(make_divisible(d * sc.width, sc.divisor) for d in net.dims)
        if net.stem_width is not None:
            update["stem_width"] = make_divisible(net.stem_width * sc.width, sc.divisor)
    if sc.depth != 1.0:
        update["depths"] = tuple(rounded(d, sc.depth) for d in net.depths)
    try:
        return NetConfig.model_validate({**net.model_dump(), **update})
    except ValidationError as e:
        err = from_validation(e, file, "", NetConfig)
        raise StudyError(file, "scale", f"width {sc.width} / depth {sc.depth} make an invalid network: "
                         f"{err.path}: {err.problem}") from None
