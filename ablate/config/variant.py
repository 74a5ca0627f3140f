"""The types a loaded study is made of (`Variant`, `LoadedStudy`) and how two variants differ. Imported by
whatever only needs the types: no YAML reading, no validation, no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .net import NetConfig
from .steps import Reference
from .study import DataSpec, Recipe, Study


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
    # `scale:` of a timm model, as nn/timm_scale.py applies it: {"width", "depth", "divisor"}; None = unscaled
    timm_scale: dict[str, Any] | None = None
    # `vs:`: the name of the variant this one's change is judged against (None: the study kind's rule)
    vs: str | None = None

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

    def plan(self) -> str:
        """What the study asks to train, in words: a sampling search by its trial budget (its variants are
        sampled while it runs), anything else by variants x seeds."""
        s = self.study
        if s.search is not None and s.search.sampler != "grid":
            return (f"search: {s.search.sampler} sampler, {s.search.trials} trials over {', '.join(s.search.space)}, "
                    f"sampler seed {s.search.seed}")
        n, seeds = len(self.variants), len(s.seeds)
        return f"{self.kind}: {n} variant{'s' * (n != 1)} × {seeds} seed{'s' * (seeds != 1)} = {n * seeds} trials"


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
    parts += [f"{k} {show_value(a)}→{show_value(b)}" for k, (a, b) in items.items()]
    more = len(parts) - limit
    return "; ".join(parts[:limit]) + (f"; (+{more} more)" if more > 0 else "")


def show_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v, separators=(",", ":")) if isinstance(v, list | dict) else str(v)


# Groups whose rows are reference models, not steps of the roadmap: compared with nothing.
REFERENCE_GROUPS = ("reference",)


def compared_with(groups: list[str], kind: str, names: list[str] | None = None,
                  vs: list[str | None] | None = None) -> list[int | None]:
    """For each variant (in study order, by its group), the position of the one its change is judged against:
    the variant its `vs:` names (`vs[i]`, looked up in `names`), else the previous non-reference step for
    `steps` studies, the first variant otherwise; None for the first and for reference rows (without `vs:`).
    The one rule the loader's `changes`, the report and the adaptive seeding share."""
    out: list[int | None] = []
    for i, g in enumerate(groups):
        if vs is not None and names is not None and vs[i] in names:
            out.append(names.index(vs[i]))  # type: ignore[arg-type]
        elif g in REFERENCE_GROUPS:
            out.append(None)
        elif kind != "steps":
            out.append(0 if i > 0 else None)
        else:
            out.append(next((j for j in range(i - 1, -1, -1) if groups[j] not in REFERENCE_GROUPS), None))
    return out


def judged_against(variants: list[Variant], kind: str) -> list[int | None]:
    """`compared_with` of a study's variants (for `changes`, a reference row is compared like any other: only
    its judging is skipped)."""
    groups = ["" for _ in variants]
    return compared_with(groups, kind, [v.name for v in variants], [v.vs for v in variants])
