"""Checks `load_study` makes on a study as a whole: how many variants a grid expands to (counted before it is
expanded), numbers that YAML spelled as booleans or inf/nan, image sizes a network can take, `exclude:` names,
and one id and one name per variant. Each failure is one `StudyError`."""

from __future__ import annotations

import math
from typing import Any

from .errors import StudyError, did_you_mean, join
from .net import NetConfig
from .study import Study
from .variant import Variant


def check_count(study: Study, file: str) -> None:
    """A grid's product is counted before it is expanded (a typo must not run for minutes at gigabytes)."""
    from .checks import MAX_VARIANTS

    space = study.grid or (study.search.space if study.search and study.search.sampler == "grid" else {})
    where = "grid" if study.grid else "search.space"
    n = math.prod(len(v) for v in space.values() if isinstance(v, list)) if space else 0
    n = max(n, len(study.steps), len(study.variants))
    if n > MAX_VARIANTS:
        raise StudyError(file, where if space else ("steps" if study.steps else "variants"),
                         f"{n:,} variants: more than {MAX_VARIANTS:,}; split the study or shrink the lists")


def check_objective(study: Study, file: str) -> None:
    """A search maximises a metric every trial measures: ema_top1 needs the recipe's EMA on (for every choice the
    search may make), or each trial would score a silent 0."""
    if study.search is None or study.search.objective != "ema_top1":
        return
    choices = study.search.space.get("recipe.ema", [study.recipe.ema])
    if not isinstance(choices, list) or None in choices:
        where = " in the search space" if "recipe.ema" in study.search.space else ""
        raise StudyError(file, "search.objective", f"ema_top1 needs the EMA of the weights, but recipe.ema is off "
                         f"(null){where}; set recipe.ema (e.g. 0.9999) or maximise top1")


def check_numbers(values: dict[str, Any], model: Any, file: str, prefix: str) -> None:
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


def check_size(net: NetConfig, size: int, file: str, where: str, name: str) -> None:
    sizes = net.feature_sizes(size)
    if min(sizes) < 1:
        stage = next(i for i, n in enumerate(sizes) if n < 1) + 1
        raise StudyError(file, where, f"{size} px is too small for variant '{name}': its stage {stage} would get "
                         f"no pixels (feature sizes {sizes}); use a larger image size")


def check_one_list(raw: dict[str, Any], file: str) -> None:
    given = [k for k in ("steps", "variants", "grid", "search") if raw.get(k)]
    if len(given) > 1:
        raise StudyError(file, given[1], f"a study has one of steps:, variants:, grid:, search: "
                         f"(this one also has {given[0]}:)")


def check_grid_lists(study: Study, file: str) -> None:
    for key, values in study.grid.items():
        if not values:
            raise StudyError(file, f"grid.{key}", "empty list: give at least one value")


def excluded(variants: list[Variant], study: Study, file: str) -> list[Variant]:
    """The variants `exclude:` leaves; every name it gives must be a variant's."""
    if not study.exclude:
        return variants
    known = [v.name for v in variants]
    for i, name in enumerate(study.exclude):
        if name not in known:
            raise StudyError(file, f"exclude[{i}]", f"no variant named '{name}'{did_you_mean(name, known)}")
    variants = [v for v in variants if v.name not in study.exclude]
    if not variants:
        raise StudyError(file, "exclude", f"leaves no variant to run (it names all {len(known)})")
    return variants


def check_unique(variants: list[Variant], study: Study, file: str) -> None:
    """One id per variant (one id = one trial per seed) and one name per variant."""
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
