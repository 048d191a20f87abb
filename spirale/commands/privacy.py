"""``spirale privacy export|erase|purge``: answer GDPR access and erasure requests, and apply the
CNIL retention period to prospects who stopped engaging.

Exit status: 0 on success, 1 when the database cannot be used, 2 on a usage error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from spirale.errors import SpiraleError
from spirale.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

USAGE_ERROR = 2

privacy_app = typer.Typer(
    name="privacy",
    help="GDPR requests (export, erase) and the retention purge of inactive prospects.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``privacy export``, ``privacy erase`` and ``privacy purge`` to the command line."""
    app.add_typer(privacy_app, name="privacy")


@privacy_app.command("export")
def export_command(
    email: Annotated[str, typer.Argument(help="The person's email address.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON here instead of stdout.")] = None,
) -> None:
    """Print everything held about a person as JSON (GDPR right of access and portability)."""
    from models.db import read_only_connection
    from spirale.privacy import export_lead

    address = _valid_email(email)
    engine = _engine()
    with _database_errors(), read_only_connection(engine) as conn:
        data = export_lead(conn, email=address)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if data["lead"] is None:
        typer.echo("no lead has this address; only suppressions and unlinked records are listed", err=True)
    if out is None:
        typer.echo(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    typer.echo(f"wrote {out}", err=True)


@privacy_app.command("erase")
def erase_command(
    email: Annotated[str, typer.Argument(help="The person's email address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person (GDPR): delete every record, keep only hashed suppressions against re-import."""
    from spirale.clock import utcnow
    from spirale.privacy import erase_lead

    address = _valid_email(email)
    if not yes and not typer.confirm(
        f"Erase every record of {address}? This cannot be undone", default=False
    ):
        _fail("nothing erased", code=1)
    engine = _engine()
    with _database_errors(), engine.begin() as conn:
        report = erase_lead(conn, email=address, now=utcnow())
    if not report.lead_found:
        typer.echo("no lead had this address", err=True)
    deleted = ", ".join(f"{table} {count}" for table, count in sorted(report.deleted.items())) or "none"
    Console(soft_wrap=True, highlight=False).print(
        f"erased: {report.rows_deleted} rows deleted ({deleted}); "
        f"blocked by hash on: {', '.join(report.suppressed_channels)}"
    )


@privacy_app.command("purge")
def purge_command(
    years: Annotated[
        int, typer.Option("--years", min=1, help="Retention: years since the last contact the prospect made.")
    ] = 3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; change nothing.")] = False,
) -> None:
    """Delete prospects who initiated no contact (click, reply, download...) for --years years."""
    from spirale.clock import utcnow
    from spirale.privacy import purge_inactive

    engine = _engine()
    with _database_errors(), engine.begin() as conn:
        report = purge_inactive(conn, now=utcnow(), years=years, dry_run=dry_run)
    verb = "would purge" if dry_run else "purged"
    statuses = ", ".join(f"{status} {count}" for status, count in sorted(report.by_status.items()))
    rows = ", ".join(f"{table} {count}" for table, count in sorted(report.rows.items())) or "none"
    console = Console(soft_wrap=True, highlight=False)
    console.print(
        f"{verb} {report.leads} prospects inactive since {report.cutoff:%Y-%m-%d}"
        + (f" ({statuses})" if statuses else "")
    )
    console.print(f"rows: {rows}")


def _valid_email(email: str) -> str:
    from models.leads import normalize_email

    try:
        return normalize_email(email)
    except ValueError as exc:
        _fail(str(exc))


def _engine() -> Engine:
    from spirale.runtime import database

    with _database_errors():
        try:
            return database(get_settings())
        except SpiraleError as exc:
            _fail(str(exc), code=1)


@contextmanager
def _database_errors() -> Iterator[None]:
    """A database failure becomes one clear line naming the database (password masked)."""
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import safe_url

    try:
        yield
    except SQLAlchemyError as exc:
        _fail(f"cannot use the database {safe_url(get_settings().database_url)}: {_reason(exc)}", code=1)


def _reason(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's statement echo (it may hold personal data)."""
    original = getattr(exc, "orig", None)
    return str(original or type(exc).__name__).strip().splitlines()[0]


def _fail(message: str, *, code: int = USAGE_ERROR) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
