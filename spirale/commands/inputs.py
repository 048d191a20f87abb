"""What several commands read from their arguments: a sequence (path or library name), a lead JSON
file, an ISO-8601 start instant. Each problem stops the command with a clear message, no traceback."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from spirale.errors import SequenceError
from spirale.settings import get_settings

if TYPE_CHECKING:
    from sequences.schema import Sequence

USAGE_ERROR = 2


def fail(message: str, *, code: int = USAGE_ERROR) -> NoReturn:
    """Print a clear message on stderr and stop (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def read_lead(path: Path) -> dict[str, Any]:
    """Lead fields from a JSON file (first_name, email, phone, timezone, consent ...)."""
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read lead file {path}: {exc}")
    except json.JSONDecodeError as exc:
        fail(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}")
    if not isinstance(fields, dict):
        fail(f"{path}: expected a JSON object of lead fields (first_name, email, phone, timezone ...)")
    return fields


def parse_start(text: str, example: str = "2026-12-19T19:30") -> datetime:
    """An ISO-8601 instant; naive values are left naive for the caller to place in a zone."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--start {text!r} is not an ISO 8601 instant (e.g. {example} or {example}+01:00)")


def load_sequence_argument(name_or_path: str) -> Sequence:
    """The sequence a command names: a file, or a name in the library; its diagnostics on failure."""
    from sequences.loader import find_sequence, load_sequence

    try:
        path = find_sequence(name_or_path, get_settings().sequences_dir)
    except SequenceError as exc:
        fail(str(exc))
    try:
        return load_sequence(path)
    except SequenceError as exc:
        for diagnostic in exc.diagnostics or [exc]:
            typer.echo(str(diagnostic), err=True)
        raise typer.Exit(1) from exc
