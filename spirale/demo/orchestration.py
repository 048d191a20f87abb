"""The Prefect API the demo's flows report to: the one configured (``PREFECT_API_URL``), else a
temporary server started for the run, whose database stays in the demo folder so its flow runs
can be browsed afterwards in the Prefect UI.

The server starts in the background while the demo prepares its data (it takes seconds), with
the task-run recorder and event persister batched (a third of the cost per task run), telemetry
off and flow heartbeats off (a simulated day is short). Prefect's console logging is kept to
warnings: the demo's progress bars and summary are what the user reads; every log still reaches
the API and the UI.
"""

from __future__ import annotations

import contextvars
import inspect
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer

#: Read by Prefect when it starts (client and server): set before it is imported.
QUIET_PREFECT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
}
STARTUP_TIMEOUT_S = 60


def quiet_prefect(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to set before Prefect is imported; values already set win."""
    current = os.environ if environ is None else environ
    return {name: value for name, value in QUIET_PREFECT.items() if name not in current}


def database_url(folder: Path) -> str:
    """Where the temporary server keeps its flow runs (``prefect server start`` can reopen it)."""
    return f"sqlite+aiosqlite:///{(folder / 'prefect.db').resolve()}"


class PrefectApi:
    """The configured Prefect API, or a temporary server started in the background."""

    def __init__(self, folder: Path) -> None:
        from prefect.settings import PREFECT_API_URL

        self.folder = folder
        self.configured: str | None = PREFECT_API_URL.value() or None
        self._server: SubprocessASGIServer | None = None
        self._starting: Future[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefect-start")

    @property
    def temporary(self) -> bool:
        return self.configured is None

    def start(self) -> None:
        """Start the temporary server in the background (nothing when one is configured)."""
        if self.configured is not None:
            return
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

        self.folder.mkdir(parents=True, exist_ok=True)
        self._server = SubprocessASGIServer()
        with temporary_settings({PREFECT_SERVER_DATABASE_CONNECTION_URL: database_url(self.folder)}):
            # The server process takes its settings from this context: start it from a copy.
            context = contextvars.copy_context()
        self._starting = self._pool.submit(context.run, self._server.start, STARTUP_TIMEOUT_S)

    @contextmanager
    def session(self) -> Iterator[str]:
        """Wait for the API, then run the block against it; yields its URL. Logs and events still
        queued are sent before a temporary server stops."""
        from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        url = self._wait()
        try:
            with temporary_settings({PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                try:
                    yield url
                finally:
                    _drain()
        finally:
            self.stop()

    def _wait(self) -> str:
        if self.configured is not None:
            return self.configured
        if self._starting is None or self._server is None:
            self.start()
        assert self._starting is not None and self._server is not None
        self._starting.result()
        return self._server.api_url

    def stop(self) -> None:
        """Stop the temporary server (idempotent)."""
        self._pool.shutdown(wait=True)
        if self._server is not None:
            self._server.stop()
            self._server = None


def _drain() -> None:
    """Send the logs and events Prefect still holds (a stopped server would leave them retrying)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        for pending in (APILogWorker.drain_all(), EventsWorker.drain_all()):
            if inspect.isawaitable(pending):
                await pending

    run_coro_as_sync(drain())
