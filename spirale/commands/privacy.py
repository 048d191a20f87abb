"""``spirale privacy export|erase|purge``: answer GDPR access and erasure requests, and apply the
CNIL retention period to prospects who stopped engaging.

Exit status: 0 on success, 1 when the database cannot be used, 2 on a usage error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from spirale.commands.inputs import database_engine, database_errors, fail

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
    engine = database_engine()
    with database_errors(), read_only_connection(engine) as conn:
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
        fail("nothing erased", code=1)
    engine = database_engine()
    with database_errors(), engine.begin() as conn:
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

    engine = database_engine()
    with database_errors(), engine.begin() as conn:
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
        fail(str(exc))
