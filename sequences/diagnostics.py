"""Diagnostics: one problem found in a sequence file, printed ``FILE:LINE:COL: error: MESSAGE``.

Lines and columns are 1-based, like compilers and editors count them, so a marketer can jump to the
faulty key. Loading and validation collect every problem of a file rather than stopping at the first.

The second half of this module words schema errors for marketers: pydantic's ``ValidationError`` entries
become ``SchemaProblem``s (unknown keys with a "did you mean", enum choices listed, the validators' own
messages without pydantic's prefixes), each with the loc of the key to point at.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from sequences.schema import Sequence

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem at a position of a file."""

    file: str
    line: int
    col: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def error(file: str, line: int, col: int, message: str) -> Diagnostic:
    """An error diagnostic (shorthand used by the loader and the validator)."""
    return Diagnostic(file, line, col, "error", message)


def warning(file: str, line: int, col: int, message: str) -> Diagnostic:
    """A warning diagnostic: worth a look, does not fail validation."""
    return Diagnostic(file, line, col, "warning", message)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """By file, then line, then column; problems at the same place keep the order they were found."""
    return sorted(diagnostics, key=lambda d: (d.file, d.line, d.col))


def count_errors(diagnostics: Iterable[Diagnostic]) -> int:
    """How many of these are errors."""
    return sum(1 for d in diagnostics if d.is_error)


def count_warnings(diagnostics: Iterable[Diagnostic]) -> int:
    """How many of these are warnings."""
    return sum(1 for d in diagnostics if not d.is_error)


def format_diagnostics(diagnostics: Iterable[Diagnostic]) -> str:
    """One line per diagnostic, in file/line order."""
    return "\n".join(str(d) for d in sort_diagnostics(diagnostics))


# --- schema errors -> plain messages -------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """A schema error rewritten for a marketer; ``loc`` is where it points in the document.
    ``at_key`` points at the key itself (an unknown key) rather than at its value."""

    loc: Loc
    message: str
    at_key: bool = False


def schema_problems(exc: ValidationError, data: Mapping[str, Any]) -> list[SchemaProblem]:
    """Every error of a ``Sequence`` validation, in plain words, each with the loc to point at."""
    errors = [err for err in exc.errors(include_url=False) if not _is_artifact(err)]
    suggested = {_suggestion(err) for err in errors if err["type"] == "extra_forbidden"}
    return [
        _problem(err, data)
        for err in errors
        # "unknown key 'chanel' (did you mean 'channel'?)" already says that 'channel' is missing.
        if not (err["type"] == "missing" and tuple(err["loc"]) in suggested)
    ]


def _suggestion(err: ErrorDetails) -> Loc | None:
    loc = tuple(err["loc"])
    close = difflib.get_close_matches(str(loc[-1]), _allowed_keys(loc[:-1]), n=1, cutoff=0.6)
    return (*loc[:-1], close[0]) if close else None


def breadcrumb(loc: Loc) -> str:
    """``('steps', 1, 'variants', 0)`` -> ``steps[1].variants[0]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else part
    return text


def _is_artifact(err: ErrorDetails) -> bool:
    # pydantic reports a too-short tuple once invalid items are dropped, on top of the items' own errors.
    raw = err["input"]
    min_length = (err.get("ctx") or {}).get("min_length", 0)
    return err["type"] == "too_short" and isinstance(raw, list | tuple) and len(raw) >= min_length


def _problem(err: ErrorDetails, data: Mapping[str, Any]) -> SchemaProblem:
    kind, loc, raw = err["type"], tuple(err["loc"]), err["input"]
    if kind == "extra_forbidden":
        return SchemaProblem(loc, _unknown_key(loc), at_key=True)
    if kind == "invalid_key":
        return SchemaProblem(loc, f"key {raw!r}{_where(loc[:-1])} must be a name (text)", at_key=True)
    if kind == "missing":
        return SchemaProblem(loc[:-1], f"missing required key {loc[-1]!r}{_where(loc[:-1])}")
    if kind == "enum":
        message = _unknown_choice(loc, raw, (err.get("ctx") or {}).get("expected", ""))
        return (
            SchemaProblem(loc[:-1], message, at_key=True)
            if loc[-1:] == ("[key]",)
            else SchemaProblem(loc, message)
        )
    if kind in ("value_error", "assertion_error"):
        text = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if isinstance(raw, str | int | float) and repr(raw) not in text:
            text += f", got {describe(raw)}"
        return SchemaProblem(_refine(loc, text, data), _prefixed(loc, text))
    got = "" if kind in ("too_short", "too_long") else f", got {describe(raw)}"
    return SchemaProblem(loc, _prefixed(loc, f"{_type_phrase(err)}{got}"))


def _where(parent: Loc) -> str:
    return f" in {breadcrumb(parent)}" if parent else ""


def _prefixed(loc: Loc, text: str) -> str:
    crumb = breadcrumb(loc)
    return f"{crumb}: {text}" if crumb and not text.startswith(crumb) else text


def _did_you_mean(word: object, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(loc: Loc) -> str:
    key, parent = loc[-1], loc[:-1]
    allowed = _allowed_keys(parent)
    hint = _did_you_mean(key, allowed) or (f" (expected one of {', '.join(allowed)})" if allowed else "")
    return f"unknown key {key!r}{_where(parent)}{hint}"


_CHOICE_NOUNS = {"windows": "channel", "exit_when": "exit condition"}


def _unknown_choice(loc: Loc, raw: object, expected: str) -> str:
    names = [p for p in (loc[:-2] if loc[-1:] == ("[key]",) else loc) if isinstance(p, str)]
    noun = _CHOICE_NOUNS.get(names[-1], names[-1]) if names else "value"
    choices = re.findall(r"'([^']*)'", expected)
    return f"unknown {noun} {raw!r}: expected one of {', '.join(choices)}{_did_you_mean(raw, choices)}"


_POINTERS: tuple[tuple[str, Loc], ...] = (
    ("variant weights", ("variants",)),
    ("variant ids must be unique", ("variants",)),
    ("'holdout' is reserved", ("variants",)),
    ("holdout needs variants", ("holdout",)),
    ("spacing.golden: max_gap", ("golden", "max_gap")),
    ("spacing.golden: the first gap", ("golden", "first")),
    ("spacing.fibonacci: max_gap", ("fibonacci", "max_gap")),
    ("spacing.fibonacci: the first gap", ("fibonacci", "unit")),
    ("spacing.fixed", ("fixed",)),
)


def _refine(loc: Loc, text: str, data: Mapping[str, Any]) -> Loc:
    """Model-level validators report at the model; point at the key that needs fixing instead."""
    duplicate = re.match(r"duplicate step id '(.*)'", text)
    if duplicate:
        return _second_id(loc, ("steps",), data, duplicate.group(1))
    if text.startswith("variant ids must be unique"):
        return _second_id(loc, (*loc, "variants"), data, None)
    for start, suffix in _POINTERS:
        if text.startswith(start):
            return loc + suffix
    return loc


def _second_id(loc: Loc, items_loc: Loc, data: Any, wanted: object) -> Loc:
    """The ``id`` of the second item of a list that repeats an id (``wanted``, or the first repeated)."""
    items: Any = data
    for part in items_loc:
        if isinstance(items, dict):
            items = items.get(part)
        elif isinstance(items, list) and isinstance(part, int) and part < len(items):
            items = items[part]
        else:
            return loc
    if not isinstance(items, list):
        return loc
    seen: set[object] = set()
    for index, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        if item_id in seen and (wanted is None or item_id == wanted):
            return (*items_loc, index, "id")
        seen.add(item_id)
    return loc


_TYPE_PHRASES = {
    "string_type": "expected text",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
}


def _type_phrase(err: ErrorDetails) -> str:
    kind, ctx, loc = err["type"], err.get("ctx") or {}, err["loc"]
    last = loc[-1] if loc else None
    if kind in ("tuple_type", "list_type", "frozen_set_type", "set_type"):
        return "expected a list of steps" if last == "steps" else "expected a list"
    if kind in ("model_type", "model_attributes_type") and len(loc) == 2 and loc[0] == "steps":
        return "expected a step (a mapping with id, channel, ...)"
    bounds = {
        "greater_than": "must be greater than {gt}",
        "greater_than_equal": "must be at least {ge}",
        "less_than": "must be less than {lt}",
        "less_than_equal": "must be at most {le}",
        "too_short": "needs at least {min_length} item(s)",
        "too_long": "allows at most {max_length} item(s)",
    }
    if kind == "too_short" and loc == ("steps",):
        return "a sequence needs at least one step"
    if kind in bounds:
        return bounds[kind].format(**{k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()})
    return _TYPE_PHRASES.get(kind) or err["msg"][:1].lower() + err["msg"][1:]


def describe(value: object) -> str:
    """A short description of a YAML value for messages: ``a mapping``, ``'fax'``, ``nothing``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, date):
        return f"the date {value.isoformat()} (quote it to make it text)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- which keys a loc allows -----------------------------------------------------------------------


def _allowed_keys(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_at(loc: Loc) -> type[BaseModel] | None:
    current: Any = Sequence
    for part in loc:
        current = _step_into(_unwrap(current), part)
        if current is None:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            others = [a for a in get_args(annotation) if a is not type(None)]
            if len(others) != 1:
                return annotation
            annotation = others[0]
        else:
            return annotation


def _step_into(annotation: Any, part: str | int) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin = get_origin(annotation)
    if origin in (tuple, list) and isinstance(part, int):
        return get_args(annotation)[0]
    if origin is dict:
        return get_args(annotation)[1]
    return None
