"""User errors about a study file: always one line, `<file>: <field path>: <problem>`."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError


class StudyError(Exception):
    """A malformed study. The CLI prints `str(err)` and exits with status 2."""

    def __init__(self, file: str, path: str, problem: str):
        self.file, self.path, self.problem = str(file), path, " ".join(str(problem).split())
        super().__init__(f"{self.file}: {self.path}: {self.problem}" if path else f"{self.file}: {self.problem}")


def join(prefix: str, loc: tuple[Any, ...] | list[Any]) -> str:
    """('steps', 3, 'set', 'groups') -> 'steps[3].set.groups'."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def did_you_mean(value: Any, allowed: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def from_validation(err: ValidationError, file: str, prefix: str, model: type[BaseModel] | None = None) -> StudyError:
    """The first problem of a pydantic error, as a one-line StudyError at its field path."""
    from .net import FieldError

    e = err.errors()[0]
    loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-union")))]
    kind, given = e["type"], e.get("input")
    exc = (e.get("ctx") or {}).get("error")
    if isinstance(exc, FieldError):  # a cross-field check names its field itself
        return StudyError(file, join(prefix, [*loc, exc.field]), exc.problem)
    msg = e["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        fields = list(_fields_at(model, loc[:-1])) if model else []
        hint = did_you_mean(loc[-1], fields)
        valid = f"; valid: {', '.join(fields)}" if fields else ""
        msg = f"unknown key '{loc[-1]}'{hint}{valid}"
    elif kind == "literal_error":
        expected = [x.strip().strip("'") for x in e["ctx"]["expected"].replace(" or ", ", ").split(",")]
        msg = f"unknown value {given!r}{did_you_mean(given, expected)}; valid: {', '.join(expected)}"
    elif kind == "missing":
        msg = "required field is missing"
    elif given is not None and not isinstance(given, dict | list) and "unknown" not in msg and "got" not in msg:
        shown = repr(given)
        msg = f"{msg} (got {shown if len(shown) <= 60 else shown[:57] + '...'})"  # a value, never a whole file
    return StudyError(file, join(prefix, loc), msg)


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """Field names of the (nested) model at `loc`, for "did you mean" on unknown keys."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        ann = current.model_fields[part].annotation
        args = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        for a in typing.get_args(ann):  # list[Step] etc.
            args += [b for b in typing.get_args(a) if isinstance(b, type) and issubclass(b, BaseModel)]
        current = args[0] if args else ann
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []
