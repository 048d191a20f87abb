"""``spirale server``: a local Prefect server (API and UI) set up for Spirale: telemetry off, and
the server's task-run recorder and event persister writing in batches (about a third of the cost
per task run). ``spirale serve`` starts one in the background when no ``PREFECT_API_URL`` is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from spirale.errors import ConfigError

console = Console(stderr=True)

#: The environment of a Prefect server for Spirale (the same as ``make server``).
SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
}
STARTUP_TIMEOUT_S = 60.0


def server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the Spirale server settings; values
    already set there win, so an operator can still tune them."""
    env = dict(os.environ if base is None else base)
    for name, value in SERVER_ENV.items():
        env.setdefault(name, value)
    return env


def server_command(host: str, port: int) -> list[str]:
    """The command that runs a Prefect server from this environment."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def wait_until_healthy(
    url: str, process: subprocess.Popen[bytes], timeout: float = STARTUP_TIMEOUT_S
) -> None:
    """Wait for ``url``/health to answer; raise ConfigError if the server exits or never answers."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the Prefect server exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise ConfigError(f"the Prefect server at {url} did not answer within {timeout:.0f} s")


@contextmanager
def background_server(host: str, port: int) -> Iterator[str]:
    """A Prefect server in a child process for the duration of the block; yields its API URL."""
    process = subprocess.Popen(server_command(host, port), env=server_env())
    url = api_url(host, port)
    try:
        wait_until_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the API and UI", min=1, max=65535)] = 4200,
) -> None:
    """Run a local Prefect server (UI at http://HOST:PORT) until interrupted."""
    console.print(f"Prefect UI: http://{host}:{port}  (flows: PREFECT_API_URL={api_url(host, port)})")
    try:
        code = subprocess.call(server_command(host, port), env=server_env())
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("server")(server)
