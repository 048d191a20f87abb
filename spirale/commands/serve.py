"""``spirale serve``: the one command that runs everything. The HTTP API (form intake, webhooks,
unsubscribe links) and every deployment (dispatch every minute, intake on each form submission,
events, reconciliation, the nightly, weekly and daily runs) in one process.

With ``PREFECT_API_URL`` set, runs are recorded on that Prefect server; without it, a local Prefect
server is started alongside (``spirale server``) and stopped on exit. Schedules stay active when
``spirale serve`` stops.
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from typing import Annotated

import typer
from rich.console import Console

from spirale.errors import SpiraleError

console = Console(stderr=True)


def serve(
    host: Annotated[str, typer.Option(help="address the API listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the API", min=1, max=65535)] = 8080,
    prefect_port: Annotated[
        int, typer.Option(help="port of the local Prefect server, when one is started", min=1, max=65535)
    ] = 4200,
    limit: Annotated[int | None, typer.Option(help="flow runs at once at most", min=1)] = None,
) -> None:
    """Run the API and serve every deployment until interrupted."""
    from spirale import runtime
    from spirale.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The runner polls the Prefect API every few seconds: one line per request would drown the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    try:
        runtime.database(settings)
        with _prefect_api(prefect_port):
            from flows.serve import serve_all

            serve_all(settings, host=host, port=port, limit=limit)
    except SpiraleError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("stopped; the schedules stay active for the next `spirale serve`")


def _prefect_api(port: int) -> AbstractContextManager[object]:
    """The configured Prefect API, or a local server started for this process."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        console.print(f"Prefect API: {configured}")
        return nullcontext()
    return _local_prefect(port)


def _local_prefect(port: int) -> AbstractContextManager[object]:
    from contextlib import ExitStack

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from spirale.commands.server import background_server

    stack = ExitStack()
    console.print(f"starting a local Prefect server; UI at http://127.0.0.1:{port}")
    url = stack.enter_context(background_server("127.0.0.1", port))
    # The environment reaches the flow-run subprocesses, the settings this process.
    os.environ["PREFECT_API_URL"] = url
    stack.enter_context(temporary_settings({PREFECT_API_URL: url}))
    return stack


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
