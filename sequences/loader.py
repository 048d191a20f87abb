"""Loading sequence files: YAML -> ``Sequence``, with every problem reported at its file, line and column.

The YAML is composed into PyYAML nodes first, so the position of every mapping key and value is known
(a ``SourceMap``); duplicate keys, which PyYAML silently collapses, are caught on the way. The data is
then validated by ``sequences.schema.Sequence`` and each pydantic error is mapped back to the faulty key
(``sequences.diagnostics.schema_problems`` words it). Semantic checks that need templates or a lead
live in ``sequences/validate.py``.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sequences.diagnostics import (
    Diagnostic,
    Loc,
    breadcrumb,
    count_errors,
    describe,
    error,
    schema_problems,
    sort_diagnostics,
)
from sequences.schema import Sequence
from spirale.errors import SequenceError

#: A document visiting more nodes than this (alias bombs) is refused before validation.
MAX_NODES = 20_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Position(NamedTuple):
    """A 1-based line and column."""

    line: int
    col: int


_START = Position(1, 1)


@dataclass(slots=True)
class SourceMap:
    """Where each key and each value of a YAML document starts, by loc (``('steps', 1, 'channel')``)."""

    keys: dict[Loc, Position] = field(default_factory=dict)
    values: dict[Loc, Position] = field(default_factory=lambda: {(): _START})

    def position(self, loc: Loc, *, at_key: bool = False) -> Position:
        """The position of ``loc``'s key (or value), else of its nearest recorded ancestor."""
        if at_key and loc in self.keys:
            return self.keys[loc]
        for end in range(len(loc), -1, -1):
            found = self.values.get(loc[:end])
            if found is not None:
                return found
        return _START


@dataclass(slots=True)
class ParsedFile:
    """The outcome of reading one sequence file: the model (if valid), the raw data and positions."""

    path: Path
    sequence: Sequence | None
    data: Any
    source: SourceMap
    diagnostics: list[Diagnostic]

    def at(self, loc: Loc, message: str, *, at_key: bool = False) -> Diagnostic:
        """An error diagnostic pointing at ``loc`` in this file."""
        pos = self.source.position(loc, at_key=at_key)
        return error(str(self.path), pos.line, pos.col, message)


class _Refused(Exception):
    """The document cannot be validated safely; carries the diagnostic message and position."""

    def __init__(self, message: str, position: Position) -> None:
        super().__init__(message)
        self.position = position


def _mark(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Walker:
    """Records positions and finds duplicate keys, over the node tree (before construction)."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.source = SourceMap()
        self.duplicates: list[tuple[Position, str]] = []
        self._visited = 0
        self._active: set[int] = set()

    def walk(self, node: Node, loc: Loc) -> None:
        self._visited += 1
        if self._visited > MAX_NODES:
            raise _Refused(f"document too large (over {MAX_NODES} values once aliases are expanded)", _START)
        if id(node) in self._active:
            raise _Refused("an alias refers to a value that contains it (recursive anchor)", _mark(node))
        self._active.add(id(node))
        if isinstance(node, MappingNode):
            self._mapping(node, loc)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.source.values[(*loc, index)] = _mark(item)
                self.walk(item, (*loc, index))
        self._active.discard(id(node))

    def _mapping(self, node: MappingNode, loc: Loc) -> None:
        first_seen: dict[object, Position] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node)
            if key is None:
                continue
            if key in first_seen:
                self.duplicates.append((_mark(key_node), self._duplicate_message(key, loc, first_seen[key])))
            first_seen[key] = _mark(key_node)
            self._record((*loc, key), key_node, value_node)
        for merged in self._merged(node):
            for key_node, value_node in merged.value:
                key = self._key(key_node)
                if key is not None and key not in first_seen and (*loc, key) not in self.source.keys:
                    self._record((*loc, key), key_node, value_node)

    def _record(self, loc: Loc, key_node: Node, value_node: Node) -> None:
        self.source.keys[loc] = _mark(key_node)
        self.source.values[loc] = _mark(value_node)
        if not isinstance(loc[-1], str):
            # pydantic names non-text keys by their text form (``None`` -> 'None').
            self.source.keys.setdefault((*loc[:-1], str(loc[-1])), _mark(key_node))
        self.walk(value_node, loc)

    def _merged(self, node: MappingNode) -> list[MappingNode]:
        sources = [value for key, value in node.value if key.tag == _MERGE_TAG]
        flat = [s for v in sources for s in (v.value if isinstance(v, SequenceNode) else [v])]
        return [s for s in flat if isinstance(s, MappingNode)]

    def _key(self, key_node: Node) -> Any:
        if not isinstance(key_node, ScalarNode):
            return None  # construction reports unhashable keys
        return self.loader.construct_object(key_node)

    @staticmethod
    def _duplicate_message(key: object, loc: Loc, first: Position) -> str:
        where = f" in {breadcrumb(loc)}" if loc else ""
        return f"duplicate key {key!r}{where} (first defined at line {first.line}; remove one of them)"


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = (exc.problem or "invalid YAML").strip()
    if "'\\t'" in problem or "\t" in problem:
        return "tab character: indent YAML with spaces, not tabs"
    if problem.startswith("found undefined alias"):
        alias = problem.removeprefix("found undefined alias").strip().strip("'")
        return f"unknown alias *{alias} (define the anchor &{alias} before using it)"
    if problem == "but found another document":
        return (
            "a sequence file holds one YAML document: remove this '---' and what follows, or split the file"
        )
    context = ""
    if exc.context and exc.context_mark is not None:
        context = f" ({exc.context} at line {exc.context_mark.line + 1})"
    return f"YAML syntax error: {problem}{context}"


def _parse_yaml(text: str) -> tuple[Any, _Walker]:
    """Compose, walk, construct. Raises ``yaml.MarkedYAMLError`` or ``_Refused``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        walker = _Walker(loader)
        if node is None:
            return None, walker
        walker.walk(node, ())
        return loader.construct_document(node), walker
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(f"not UTF-8 text ({exc.reason} at byte {exc.start})", _START) from exc
    except OSError as exc:
        raise _Refused(f"cannot read file: {exc.strerror or exc}", _START) from exc


def parse_sequence_file(path: Path) -> ParsedFile:
    """Read and validate one sequence file against the schema, collecting every problem."""
    parsed = ParsedFile(path, None, None, SourceMap(), [])
    try:
        parsed.data, walker = _parse_yaml(_read_text(path))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        parsed.diagnostics.append(error(str(path), line, col, _yaml_message(exc)))
        return parsed
    except yaml.YAMLError as exc:
        parsed.diagnostics.append(error(str(path), 1, 1, f"YAML error: {exc}"))
        return parsed
    except _Refused as exc:
        parsed.diagnostics.append(error(str(path), exc.position.line, exc.position.col, str(exc)))
        return parsed
    except RecursionError:
        parsed.diagnostics.append(error(str(path), 1, 1, "document nested too deeply"))
        return parsed
    parsed.source = walker.source
    parsed.diagnostics.extend(error(str(path), p.line, p.col, m) for p, m in walker.duplicates)
    _validate_schema(parsed)
    parsed.diagnostics = sort_diagnostics(parsed.diagnostics)
    return parsed


def _validate_schema(parsed: ParsedFile) -> None:
    data = parsed.data
    if data is None:
        parsed.diagnostics.append(parsed.at((), "empty file: a sequence needs at least 'name' and 'steps'"))
        return
    if not isinstance(data, dict):
        parsed.diagnostics.append(
            parsed.at((), f"the top level must be a mapping (name: ..., steps: ...), got {describe(data)}")
        )
        return
    _check_name(parsed, data)
    try:
        sequence = Sequence.model_validate(data)
    except ValidationError as exc:
        for problem in schema_problems(exc, data):
            parsed.diagnostics.append(parsed.at(problem.loc, problem.message, at_key=problem.at_key))
        return
    if not parsed.diagnostics:
        parsed.sequence = sequence


def _check_name(parsed: ParsedFile, data: dict[Any, Any]) -> None:
    name, stem = data.get("name"), parsed.path.stem
    if isinstance(name, str) and name != stem:
        parsed.diagnostics.append(
            parsed.at(
                ("name",), f"name {name!r} must match the file name {parsed.path.name!r} (expected {stem!r})"
            )
        )


def load_sequence_file(path: Path) -> tuple[Sequence | None, list[Diagnostic]]:
    """The sequence in ``path`` (None if it has errors) and every schema-level diagnostic."""
    parsed = parse_sequence_file(path)
    return parsed.sequence, parsed.diagnostics


def load_sequence(path: Path) -> Sequence:
    """Load one sequence file or raise ``SequenceError`` carrying all its diagnostics."""
    sequence, diagnostics = load_sequence_file(path)
    if sequence is None:
        raise _sequence_error(f"{path} is not a valid sequence", diagnostics)
    return sequence


def _sequence_error(summary: str, diagnostics: list[Diagnostic]) -> SequenceError:
    count = count_errors(diagnostics)
    lines = "\n".join(str(d) for d in diagnostics)
    return SequenceError(f"{summary} ({count} error{'s' if count != 1 else ''}):\n{lines}", list(diagnostics))


def library_files(sequences_dir: Path) -> list[Path]:
    """The sequence files of a sequences directory: ``library/*.yaml``, sorted by name."""
    return sorted((sequences_dir / "library").glob("*.yaml"))


def find_sequence(name_or_path: str, sequences_dir: Path) -> Path:
    """A path to a sequence file: ``name_or_path`` itself if it is a file, else a library name."""
    candidate = Path(name_or_path)
    looks_like_path = candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1
    if candidate.is_file():
        return candidate
    if looks_like_path:
        raise SequenceError(f"no such sequence file: {name_or_path}")
    in_library = sequences_dir / "library" / f"{name_or_path}.yaml"
    if in_library.is_file():
        return in_library
    available = [p.stem for p in library_files(sequences_dir)]
    close = difflib.get_close_matches(name_or_path, available, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(available) if available else "none"
    raise SequenceError(f"unknown sequence {name_or_path!r}{hint}; available: {listing}")


def load_library(sequences_dir: Path) -> dict[str, Sequence]:
    """Every library sequence by name; raises ``SequenceError`` with all diagnostics if any is invalid."""
    sequences: dict[str, Sequence] = {}
    problems: list[Diagnostic] = []
    for path in library_files(sequences_dir):
        sequence, diagnostics = load_sequence_file(path)
        problems.extend(diagnostics)
        if sequence is not None:
            sequences[sequence.name] = sequence
    if count_errors(problems):
        raise _sequence_error(f"the sequence library {sequences_dir / 'library'} has errors", problems)
    return sequences


def sequence_digest(path: Path) -> str:
    """A content hash of a sequence file (sha256 of its bytes, 12 hex chars) to version enrollments."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
