"""The base of every study-file model (`Strict`) and a variant's name type (`Name`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .checks import yaml_boolean_problem


def _one_line(v: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError("a name is one line of text: no tabs, newlines or other control characters")
    return v


# a variant name: one line of printable text (a label in tables, charts and reports)
Name = Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_one_line)]


class Strict(BaseModel):
    """No unknown keys, frozen, no inf/nan, and no YAML boolean (`yes`) where a number is meant."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        problem = yaml_boolean_problem(v, field.annotation) if field is not None else None
        if problem:
            raise ValueError(problem)
        return v
