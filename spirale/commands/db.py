"""``spirale db``: migrate the database schema and show its version. URLs are always printed with
the password masked."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from spirale.errors import SpiraleError

console = Console(soft_wrap=True)  # a URL must stay on one line to be copied
db_app = typer.Typer(name="db", help="Migrate the database schema, show its version.", no_args_is_help=True)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="database URL (default: SPIRALE_DATABASE_URL or var/spirale.db)")
]


def _url(url: str | None) -> str:
    from spirale.settings import get_settings

    return url or get_settings().database_url


def _fail(action: str, safe: str, exc: Exception) -> typer.Exit:
    reason = getattr(exc, "orig", None) or exc
    console.print(f"[red]error:[/] cannot {action} database {safe}: {escape(str(reason))}")
    return typer.Exit(1)


@db_app.command("upgrade")
def upgrade(
    url: UrlOption = None,
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Create or migrate the schema up to REVISION (safe to run on every deploy)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from models import db

    target = _url(url)
    safe = escape(db.safe_url(target))
    console.print(f"upgrading database {safe} to {escape(revision)}")
    try:
        db.upgrade(target, revision)
        current = db.current_revision(db.make_engine(target))
    except (SQLAlchemyError, CommandError, SpiraleError) as exc:
        raise _fail("upgrade", safe, exc) from exc
    console.print(f"database {safe} is at revision {current}")


@db_app.command("current")
def current(url: UrlOption = None) -> None:
    """Show the schema revision of the database and whether it is the newest."""
    from sqlalchemy.exc import SQLAlchemyError

    from models import db

    target = _url(url)
    safe = escape(db.safe_url(target))
    try:
        revision = db.current_revision(db.make_engine(target))
    except (SQLAlchemyError, SpiraleError) as exc:
        raise _fail("read", safe, exc) from exc
    head = db.head_revision()
    if revision is None:
        console.print(f"database {safe} is not migrated: run `spirale db upgrade`")
    elif revision == head:
        console.print(f"database {safe} is at revision {revision} (head)")
    else:
        console.print(f"database {safe} is at revision {revision}, not {head}: run `spirale db upgrade`")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
