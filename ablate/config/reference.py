"""The study-file reference (docs/study-file.md), generated from the config models' own field descriptions: the
one place each field is documented is its `Field(description=...)`, which also serves `--help` and the error
messages. `python -m ablate.config.reference > docs/study-file.md` rewrites the page; a test fails when the
committed page is stale."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .net import NetConfig
from .presets import PRESETS
from .recipes import RECIPES
from .steps import Match, Reference, Step
from .study import DataSpec, Evidence, Measure, Range, Recipe, Scale, Search, Study

# (heading, where the section sits in a study file, its model)
SECTIONS: list[tuple[str, str, type[BaseModel]]] = [
    ("The study", "top level", Study),
    ("The network", "`model:`, a step's or variant's `set:` (dotted `model.<field>` with --set)", NetConfig),
    ("Data", "`data:` (`data.<field>` in `set:` and --set)", DataSpec),
    ("Training recipe", "`recipe:` (`recipe.<field>` in `set:` and --set)", Recipe),
    ("Proxy scaling", "`scale:`", Scale),
    ("What is measured", "`measure:`", Measure),
    ("How changes are judged", "`evidence:`", Evidence),
    ("Steps and variants", "each item of `steps:` (cumulative) or `variants:` (independent)", Step),
    ("Paper values", "a step's or variant's `reference:`", Reference),
    ("Iso-cost matching", "`match:` (study-wide, or a step's or variant's own)", Match),
    ("Searches", "`search:`", Search),
    ("A numeric search dimension", "a value of `search.space`", Range),
]


def type_text(annotation: Any, markdown: bool = False) -> str:
    """A field's type as a reader writes it: `int`, `float | null`, `list[int]`, `"a" | "b"`; `markdown`: for a
    table cell (the bar escaped, literal values as code)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    bar = " \\| " if markdown else " | "
    if origin is typing.Annotated:
        return type_text(args[0], markdown)
    if origin is typing.Literal:
        return bar.join(f"`{json.dumps(a)}`" if markdown else json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return bar.join(type_text(a, markdown) for a in args)
    if annotation is type(None):
        return "null"
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_text(a, markdown) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    value = list(value) if isinstance(value, tuple) else value
    return f"`{json.dumps(value)}`".replace("|", "\\|")


def _table(model: type[BaseModel]) -> list[str]:
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        text = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {type_text(field.annotation, markdown=True)} | {_default(field)} | {text} |")
    return lines


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def study_reference() -> str:
    """The whole page, in Markdown."""
    out = ["# Study-file reference", "",
           "Generated from the field descriptions of ablate's config models (`python -m ablate.config.reference > "
           "docs/study-file.md`); do not edit by hand. A study file is YAML; `extends: other.yaml` inherits a file "
           "and deep-merges this one over it; `--set a.b=value` overrides any field from the command line.", ""]
    for heading, where, model in SECTIONS:
        out += [f"## {heading}", "", f"Where: {where}. {_doc(model)}", "", *_table(model), ""]
    out += ["## Presets", "", "`model: {preset: <name>}` starts from one of these networks (fields given beside it "
            "override the preset's):", "", ", ".join(f"`{name}`" for name in PRESETS), ""]
    out += ["## Recipe presets", "", "`recipe.preset` fills every recipe field the study leaves out (the warmup and "
            "step milestones stretched to `epochs`):", "", "| field | " + " | ".join(RECIPES) + " |",
            "|---|" + "---|" * len(RECIPES)]
    fields = list(dict.fromkeys(k for preset in RECIPES.values() for k in preset))
    for k in fields:
        cells = [f"`{json.dumps(list(v) if isinstance(v, tuple) else v)}`" if k in p else "(default)"
                 for p in RECIPES.values() for v in [p.get(k)]]
        out.append(f"| `{k}` | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(study_reference(), end="")
