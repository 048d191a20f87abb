"""``spirale demo``: the whole product on SQLite and the local outbox, nothing to configure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def demo(
    leads: Annotated[int, typer.Option(min=1, help="how many synthetic leads")] = 300,
    days: Annotated[int, typer.Option(min=1, help="how many simulated days")] = 30,
    folder: Annotated[Path, typer.Option(help="where the demo database and outbox go")] = Path("var/demo"),
) -> None:
    """Validate the library, then run a nurture sequence over simulated weeks into the local outbox."""
    from spirale.demo.run import DemoOptions, run_demo
    from spirale.settings import get_settings

    code = run_demo(get_settings(), DemoOptions(leads=leads, days=days, folder=folder), Console())
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
