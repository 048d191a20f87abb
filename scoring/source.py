"""Reading marketers' YAML configuration files (``scoring.yaml``, ``team.yaml``) with positions.

The document is composed into PyYAML nodes first, so the line and column of every key and value is
known and duplicate keys (which PyYAML silently collapses) are reported. The data is then validated
by a pydantic model and every error is reported at its ``FILE:LINE:COL``, in the same words as
``spirale validate`` uses for sequences.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sequences.diagnostics import Diagnostic, Loc, breadcrumb, describe, error, sort_diagnostics

ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_NODES = 20_000


@dataclass(slots=True)
class Positions:
    """Where each key and value of a document starts (1-based line, column), by loc."""

    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    values: dict[Loc, tuple[int, int]] = field(default_factory=lambda: {(): (1, 1)})

    def of(self, loc: Loc, *, at_key: bool = False) -> tuple[int, int]:
        """The position of ``loc`` (its key when ``at_key``), else of its nearest known ancestor."""
        if at_key and loc in self.keys:
            return self.keys[loc]
        for end in range(len(loc), -1, -1):
            found = self.values.get(loc[:end])
            if found is not None:
                return found
        return (1, 1)


@dataclass(slots=True)
class LoadedFile(Generic[ModelT]):
    """One configuration file: its model when valid, and every problem found."""

    path: Path
    model: ModelT | None
    data: Any
    positions: Positions
    diagnostics: list[Diagnostic]

    def at(self, loc: Loc, message: str, *, at_key: bool = False) -> Diagnostic:
        """An error pointing at ``loc`` in this file."""
        line, col = self.positions.of(loc, at_key=at_key)
        return error(str(self.path), line, col, message)


def _mark(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, path: Path) -> None:
        self.loader = loader
        self.path = path
        self.positions = Positions()
        self.problems: list[Diagnostic] = []
        self.visited = 0

    def walk(self, node: Node, loc: Loc) -> None:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise yaml.YAMLError(f"document too large (over {MAX_NODES} values)")
        if isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.positions.values[(*loc, index)] = _mark(item)
                self.walk(item, (*loc, index))
        elif isinstance(node, MappingNode):
            seen: dict[object, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    continue
                key = self.loader.construct_object(key_node)
                if key in seen:
                    where = f" in {breadcrumb(loc)}" if loc else ""
                    line, col = _mark(key_node)
                    message = f"duplicate key {key!r}{where} (first defined at line {seen[key]}; remove one)"
                    self.problems.append(error(str(self.path), line, col, message))
                seen[key] = _mark(key_node)[0]
                self.positions.keys[(*loc, key)] = _mark(key_node)
                self.positions.values[(*loc, key)] = _mark(value_node)
                self.walk(value_node, (*loc, key))


def _parse(path: Path) -> tuple[Any, _Walker]:
    loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        walker = _Walker(loader, path)
        if node is None:
            return None, walker
        walker.walk(node, ())
        return loader.construct_document(node), walker
    finally:
        loader.dispose()


def load_model(path: Path, model: type[ModelT], *, what: str) -> LoadedFile[ModelT]:
    """Read ``path`` and validate it against ``model``; ``what`` names the file in messages."""
    loaded: LoadedFile[ModelT] = LoadedFile(path, None, None, Positions(), [])
    try:
        loaded.data, walker = _parse(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        loaded.diagnostics.append(error(str(path), line, col, f"YAML syntax error: {exc.problem or exc}"))
        return loaded
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        loaded.diagnostics.append(error(str(path), 1, 1, f"cannot read {what}: {exc}"))
        return loaded
    loaded.positions = walker.positions
    loaded.diagnostics.extend(walker.problems)
    if not isinstance(loaded.data, dict):
        loaded.diagnostics.append(loaded.at((), f"{what} must be a mapping, got {describe(loaded.data)}"))
        return loaded
    try:
        validated = model.model_validate(loaded.data)
    except ValidationError as exc:
        worded = [_wording(err, model) for err in exc.errors(include_url=False)]
        suggested = {suggestion for _, _, _, suggestion in worded if suggestion is not None}
        for loc, message, at_key, _ in worded:
            # "unknown key 'nme' (did you mean 'name'?)" already says that 'name' is missing.
            if not message.startswith("missing required key") or _missing_key(loc, message) not in suggested:
                loaded.diagnostics.append(loaded.at(loc, message, at_key=at_key))
    else:
        if not loaded.diagnostics:
            loaded.model = validated
    loaded.diagnostics = sort_diagnostics(loaded.diagnostics)
    return loaded


def _missing_key(loc: Loc, message: str) -> Loc:
    return (*loc, message.split("'")[1])


def _wording(err: ErrorDetails, root: type[BaseModel]) -> tuple[Loc, str, bool, Loc | None]:
    """Where an error points, its message, whether it points at the key, and the key an unknown
    key probably meant."""
    kind, loc = err["type"], tuple(err["loc"])
    # Errors inside a dict key are reported by pydantic with a trailing '[key]': point at the key.
    in_key = "[key]" in loc
    loc = tuple(part for part in loc if part != "[key]")
    where = f" in {breadcrumb(loc[:-1])}" if len(loc) > 1 else ""
    if kind == "extra_forbidden":
        allowed = allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else (f" (expected one of {', '.join(allowed)})")
        return loc, f"unknown key {loc[-1]!r}{where}{hint}", True, ((*loc[:-1], close[0]) if close else None)
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}{where}", False, None
    text = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    raw = err["input"]
    container = isinstance(raw, dict | list)
    if not container and kind not in ("value_error", "assertion_error"):
        text += f", got {describe(raw)}"
    crumb = breadcrumb(loc)
    # A whole mapping or list is wrong: point at its key, where the reader looks for it.
    return loc, f"{crumb}: {text}" if crumb else text, container or in_key, None


def allowed_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a mapping at ``loc`` of a ``root`` document may hold (empty if free-form)."""
    current: Any = root
    for part in loc:
        current = _step(_unwrap(current), part)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


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


def _step(annotation: Any, part: str | int) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part))
        return info.annotation if info is not None else None
    origin = get_origin(annotation)
    if origin in (tuple, list) and isinstance(part, int):
        return get_args(annotation)[0]
    if origin is dict:
        return get_args(annotation)[1]
    return None
