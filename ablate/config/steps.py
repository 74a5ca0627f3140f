"""What a study lists: roadmap steps and independent variants, their published reference numbers and their
iso-cost `match:` targets."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .strict import Name, Strict


class Reference(Strict):
    """Published numbers a variant is compared with."""

    top1: float | None = Field(None, ge=0, le=100)
    top1_std: float | None = Field(None, ge=0)
    top5: float | None = Field(None, ge=0, le=100)
    gflops: float | None = Field(None, ge=0, description="GFLOPs as the source prints them.")
    gflops_corrected: float | None = Field(
        None, ge=0, description="Where the printed GFLOPs are a misprint: the value the source's own count implies "
        "(kept beside the printed one, never in its place).")
    params: int | None = Field(None, ge=0)
    source: str | None = None
    note: str | None = None


class Match(Strict):
    """Iso-cost: one width multiplier on every stage (and the stem) of a variant, solved so that its cost at
    the paper's scale (`measure.flops_image_size`, 3 channels, 1000 classes) lands on a target."""

    gflops: float | Literal["reference"] | None = Field(
        None, description="Target GFLOPs, fvcore's full count (`gflops_fvcore` of `ablate flops`); `reference` = "
        "the first variant's own (unmatched) cost, or the base model's when there is none.")
    params: float | Literal["reference"] | None = Field(
        None, description="Target parameter count (e.g. 28.6e6); `reference` as for gflops.")
    tolerance: float = Field(0.02, gt=0, lt=1, description="Largest relative distance from the target.")
    divisor: int = Field(8, gt=0, description="Widths are rounded to a multiple of this, and of what the "
                         "network needs (a width that `groups` and `expansion` divide).")

    @model_validator(mode="after")
    def _one_target(self) -> Match:
        given = [k for k in ("gflops", "params") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one target: gflops or params" + (f" (got {' and '.join(given)})"
                                                                            if given else ""))
        value = getattr(self, given[0])
        if value != "reference" and value <= 0:
            raise ValueError(f"{given[0]} must be positive (got {value})")
        return self

    @property
    def metric(self) -> str:
        return "gflops" if self.gflops is not None else "params"

    @property
    def target(self) -> float | str:
        return self.gflops if self.gflops is not None else self.params  # type: ignore[return-value]


class Step(Strict):
    """One roadmap step: `set` applies to the previous step (cumulative)."""

    name: Name
    group: str | None = Field(None, description="Section of the roadmap (e.g. `macro design`).")
    set: dict[str, Any] = Field(
        default_factory=dict, description="Network fields (or dotted recipe./data. paths) to change.")
    model: dict[str, Any] | None = Field(None, description="Replace the whole network (preset / timm / fields).")
    reference: Reference | None = None
    match: Match | None = Field(None, description="Iso-cost target of this variant; null = the study's `match`.")
    vs: Name | None = Field(
        None, description="The name of the variant this one's change is judged against (its `changes`, the paired "
        "comparison and the verdict of the report); null = the previous step (steps) or the first variant (variants). "
        "E.g. a step that also undoes part of an earlier one: `vs: stage ratio`.")


class VariantSpec(Step):
    """An independent variant: `set` (or `model`) applies to the study's base model."""
