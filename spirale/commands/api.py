"""``spirale api``: serve the HTTP API alone (form intake, webhooks, unsubscribe links).

Without Prefect, form submissions are stored and wait for the next intake run; ``spirale serve``
runs the API together with every deployment."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

from spirale.errors import SpiraleError

console = Console(stderr=True)


def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 8080,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the HTTP API with uvicorn until interrupted."""
    import uvicorn

    from spirale.api.app import create_app
    from spirale.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(get_settings())
    except SpiraleError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command("api")(api)
