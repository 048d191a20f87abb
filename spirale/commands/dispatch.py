"""``spirale dispatch``: run one dispatch tick now (or at ``--now``, to travel in time)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from spirale.clock import parse_instant, utcnow
from spirale.errors import SpiraleError

console = Console()


def dispatch(
    now: Annotated[
        str | None, typer.Option(help="ISO-8601 instant to dispatch at (default: the real time)")
    ] = None,
    max_batches: Annotated[int | None, typer.Option(help="stop after this many batches")] = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="dispatcher processes, each claiming its own shard of the due steps (one per core pays "
            "on a large backlog; each process takes about a second to start)",
        ),
    ] = 1,
) -> None:
    """Send every step that is due, exactly once, and print what happened."""
    from spirale import runtime
    from spirale.dispatch.parallel import dispatch_in_processes
    from spirale.settings import get_settings

    try:
        instant = parse_instant(now) if now else utcnow()
    except ValueError as exc:
        console.print(f"[red]error:[/] --now: expected an ISO-8601 instant, got {now!r}")
        raise typer.Exit(2) from exc
    try:
        if processes == 1:
            report = runtime.dispatcher(get_settings()).dispatch_due(now=instant, max_batches=max_batches)
        else:
            report = dispatch_in_processes(
                get_settings(), now=instant, processes=processes, max_batches=max_batches
            )
    except SpiraleError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    table = Table(title=f"dispatch at {instant.isoformat(timespec='minutes')}")
    for column in ("outcome", "key", "count"):
        table.add_column(column)
    for row in report.rows():
        if row["count"]:
            table.add_row(str(row["outcome"]), str(row["key"]), str(row["count"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("dispatch")(dispatch)
