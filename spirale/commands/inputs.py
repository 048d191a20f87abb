"""What several commands read from their arguments: a sequence (path or library name), a lead JSON
file, an ISO-8601 start instant. Each problem stops the command with a clear message, no traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from spirale.errors import SequenceError, SpiraleError
from spirale.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sequences.schema import Sequence

USAGE_ERROR = 2


def fail(message: str, *, code: int = USAGE_ERROR) -> NoReturn:
    """Print a clear message on stderr and stop (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def database_engine() -> Engine:
    """The settings' database, migrated, or one clear error line (exit 1)."""
    from spirale.runtime import database

    with database_errors():
        try:
            return database(get_settings())
        except SpiraleError as exc:
            fail(str(exc), code=1)


@contextmanager
def database_errors() -> Iterator[None]:
    """A database failure becomes one clear line naming the database (password masked)."""
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import safe_url

    try:
        yield
    except SQLAlchemyError as exc:
        fail(f"cannot use the database {safe_url(get_settings().database_url)}: {_reason(exc)}", code=1)


def _reason(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's statement echo (it may hold personal data)."""
    original = getattr(exc, "orig", None)
    return str(original or type(exc).__name__).strip().splitlines()[0]


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
