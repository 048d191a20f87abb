"""``spirale demo``: a whole quarter of marketing automation on SQLite, the local outbox and a
temporary Prefect server; no credentials, nothing to start by hand."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def demo(
    leads: Annotated[int, typer.Option(min=10, help="About how many synthetic leads.")] = 5000,
    days: Annotated[int, typer.Option(min=1, max=366, help="How many simulated days.")] = 90,
    keep: Annotated[
        bool, typer.Option("--keep", help="Continue the previous demo database instead of starting afresh.")
    ] = False,
    folder: Annotated[Path, typer.Option(help="Where the demo database and outbox go.")] = Path("var/demo"),
    report: Annotated[Path, typer.Option(help="Where the HTML report goes.")] = Path("var/report"),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic people and their behaviour.")] = 7,
) -> None:
    """Run a whole quarter of marketing automation: form downloads, qualification, golden-spiral
    nurture, sales attempts, a reactivation A/B test; then a summary and an HTML report."""
    from spirale.demo.orchestration import quiet_prefect

    # Read by Prefect when it is first imported, below.
    os.environ.update(quiet_prefect())
    from spirale.demo.run import DemoOptions, run_demo
    from spirale.errors import SpiraleError
    from spirale.settings import get_settings

    console = Console()
    options = DemoOptions(leads=leads, days=days, folder=folder, report=report, keep=keep, seed=seed)
    try:
        run_demo(get_settings(), options, console)
    except SpiraleError as exc:
        console.print(f"[red]demo stopped:[/] {exc}")
        raise typer.Exit(1) from exc


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
