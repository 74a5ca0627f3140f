"""`ablate schema`, `ablate fields` and `ablate presets`: the study file's JSON Schema (for editor completion),
every field with its type and meaning, and the network and recipe presets, one line each. All are generated
from the config models and preset tables, never written twice by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema(out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the schema to this file instead of stdout.")] = None) -> None:
    """The JSON Schema of a study file, generated from ablate's config models.

    For completion and checking in an editor: save it (`ablate schema -o study.schema.json`) and put
    `# yaml-language-server: $schema=study.schema.json` at the top of a study (VS Code's YAML extension and other
    editors that speak the YAML language server). `ablate validate` checks more than a schema can (the network's
    shapes, the data)."""
    text = json.dumps(study_schema(), indent=1) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    from ablate.files import atomic_write_text

    print(atomic_write_text(out, text))


def study_schema() -> dict[str, Any]:
    """The Study model's JSON Schema, with the network made explicit: `model:` and a step's `model:` name a preset
    (listed), a timm model or NetConfig fields; a step's `set:` NetConfig fields (or dotted recipe./data. paths);
    and the `extends:` that loading resolves before validation."""
    from ablate.config.net import NetConfig
    from ablate.config.presets import PRESETS
    from ablate.config.study import Study

    out = Study.model_json_schema()
    net = NetConfig.model_json_schema()
    out["$defs"].update(net.pop("$defs", {}))
    model = {"type": "object", "title": "Model", "description": "A preset and/or network fields, or a timm model.",
             "properties": {"preset": {"enum": list(PRESETS), "description": "A network preset (`ablate presets`)."},
                            "timm": {"type": "string", "description": "Any timm model by name (fields cannot be "
                                     "set on it)."},
                            **net["properties"]}}
    out["$defs"]["Model"] = model
    _point_at_model(out, net["properties"])
    out["properties"]["extends"] = {"type": "string", "description": "A study file to inherit (path relative to "
                                    "this one); this file is deep-merged over it."}
    return {"$schema": SCHEMA_DIALECT, **out}


def _point_at_model(node: Any, net: dict[str, Any]) -> None:
    """Every `model` property (an open object) refers to the Model definition; every `set` lists the fields."""
    if isinstance(node, list):
        for x in node:
            _point_at_model(x, net)
        return
    if not isinstance(node, dict):
        return
    props = node.get("properties")
    if isinstance(props, dict):
        if "model" in props:
            m = props["model"]
            nullable = "anyOf" in m
            props["model"] = {k: v for k, v in m.items() if k in ("description", "default", "title")} | (
                {"anyOf": [{"$ref": "#/$defs/Model"}, {"type": "null"}]} if nullable else {"$ref": "#/$defs/Model"})
        if "set" in props and props["set"].get("type") == "object":
            props["set"] = {**props["set"], "properties": net}
    for v in node.values():
        _point_at_model(v, net)


# where each model's fields sit in a study file
PREFIX = {"Study": "", "NetConfig": "model.", "DataSpec": "data.", "Recipe": "recipe.", "Scale": "scale.",
          "Measure": "measure.", "Evidence": "evidence.", "Step": "steps[].", "Reference": "steps[].reference.",
          "Match": "match.", "Search": "search.", "Range": "search.space.<dim>."}


def fields(section: Annotated[str | None, typer.Argument(
        help="Only the fields under this prefix, e.g. model, recipe, data, search.", show_default=False)] = None
           ) -> None:
    """Every study-file field: its path, type and meaning (from the config models; in full with defaults in
    docs/study-file.md)."""
    from ablate.config.reference import SECTIONS, type_text

    rows = [(PREFIX.get(model.__name__, "") + name, type_text(f.annotation), " ".join((f.description or "").split()))
            for _, _, model in SECTIONS for name, f in model.model_fields.items()]
    if section:
        rows = [r for r in rows if r[0].startswith(section.rstrip(".") + ".") or r[0] == section]
        if not rows:
            from ablate.config.errors import StudyError

            raise StudyError("fields", "", f"no field under '{section}'; sections: "
                             + ", ".join(sorted({p.split(".")[0].split("[")[0] for p in PREFIX.values() if p})))
    width = [max(len(r[k]) for r in rows) for k in (0, 1)]
    for path, kind, text in rows:
        print(f"{path.ljust(width[0])}  {kind.ljust(min(width[1], 28))}  {text}".rstrip())


def presets() -> None:
    """The network presets (`model: {preset: NAME}`) and the recipe presets (`recipe: {preset: NAME}`), one line
    each: family, depths, widths, parameters and the paper's numbers where it gives them."""
    from ablate.config import presets as net_presets
    from ablate.config.recipes import RECIPES

    families = {id(net_presets.RESNET): "ResNet", id(net_presets.CONVNEXT): "ConvNeXt",
                id(net_presets.CONVNEXT_V2): "ConvNeXt V2", id(net_presets.ISOTROPIC): "isotropic ConvNeXt"}
    print("network presets (model: {preset: NAME}):")
    width = max(map(len, net_presets.PRESETS))
    for name, (base, over, ref) in net_presets.PRESETS.items():
        f = {**base, **over}
        line = (f"  {name.ljust(width)}  {families.get(id(base), '?'):<18} depths {list(f['depths'])}, dims "
                f"{list(f['dims'])}, {ref['params'] / 1e6:.1f} M params")
        if "top1" in ref:
            line += f"; paper: top-1 {ref['top1']} %, {ref['gflops']} GFLOPs"
        print(line)
    print("recipe presets (recipe: {preset: NAME}; the schedule stretches to the study's epochs):")
    for name, r in RECIPES.items():
        print(f"  {name.ljust(width)}  {recipe_line(r)}")


def recipe_line(r: dict[str, Any]) -> str:
    """A recipe preset in one line: optimizer, learning rate, schedule, regularization."""
    parts = [f"{r['opt']} lr {r['base_lr']:g} per {r['base_batch']} images", f"weight decay {r['weight_decay']:g}",
             f"{r['sched']} schedule over {r['epochs']} epochs" + (f", warmup {r['warmup_epochs']:g}"
                                                                  if r.get("warmup_epochs") else "")]
    regs = [f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
            if k in ("randaugment", "mixup", "cutmix", "random_erasing", "label_smoothing", "drop_path", "ema") and v]
    return "; ".join(parts + [", ".join(regs) if regs else "no augmentation beyond crop and flip"])
