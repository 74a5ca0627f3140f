"""The paper's published numbers, one YAML file per table (the files say where each number comes from).

Read by `ablate.config.presets` (the presets' reference numbers) and by the tests, which hold the studies'
`reference:` values to these tables. YAML only: no torch, so reading a table stays instant.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

TABLES = {
    "convnext_roadmap": "Table 10 and Figure 2: ResNet-50 -> ConvNeXt-T",
    "convnext_roadmap_r200": "Table 11: ResNet-200 -> ConvNeXt-B",
    "convnext_isotropic": "Table 2: isotropic ConvNeXt-S/B/L",
    "training_recipe": "Table 5 (ImageNet-1K recipe), Table 1 (ConvNeXt-T/S/B/L), the classic ResNet recipe",
}


@cache
def table(name: str) -> dict[str, Any]:
    """The parsed reference file `name` (one of TABLES); KeyError for another name."""
    import yaml

    if name not in TABLES:
        raise KeyError(f"unknown reference table '{name}'; valid: {', '.join(TABLES)}")
    return yaml.safe_load(files(__name__).joinpath(f"{name}.yaml").read_text())
