"""``spirale conversions import FILE.csv``: record conversions (purchases, signed deals) from a file.

All rows or none: a file with any wrong row imports nothing and lists every problem by line; a file
imported twice counts each conversion once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)
conversions_app = typer.Typer(
    name="conversions", help="Record conversions, the outcome offers are judged on."
)


@conversions_app.command("import")
def import_file(
    path: Annotated[
        Path, typer.Argument(help="CSV with email (or lead_id), occurred_at, value, source, external_id")
    ],
    source: Annotated[str, typer.Option(help="source of rows that name none")] = "csv",
) -> None:
    """Import conversions from a CSV file (comma- or semicolon-separated, UTF-8)."""
    from scoring.conversions import import_conversions_csv
    from spirale import runtime
    from spirale.clock import utcnow
    from spirale.errors import SpiraleError
    from spirale.settings import get_settings

    try:
        engine = runtime.database(get_settings())
        with path.open(encoding="utf-8-sig", newline="") as stream, engine.begin() as conn:
            result = import_conversions_csv(conn, stream, now=utcnow(), default_source=source)
    except OSError as exc:
        errors.print(f"[red]error:[/] cannot read {path}: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(1) from exc
    except UnicodeDecodeError as exc:
        errors.print(f"[red]error:[/] {path} is not UTF-8 text: save it as CSV UTF-8", highlight=False)
        raise typer.Exit(1) from exc
    except SpiraleError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    if result.errors:
        for problem in result.errors:
            errors.print(f"{path}:{problem.line}: {problem.message}", highlight=False, soft_wrap=True)
        errors.print(f"[red]nothing imported:[/] {len(result.errors)} row(s) to fix", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"recorded {result.recorded} conversion(s); {result.duplicates} already known", highlight=False
    )


def register(app: typer.Typer) -> None:
    app.add_typer(conversions_app, name="conversions")
