"""A synchronous HTTP client that calls the ASGI app in-process (httpx's ``ASGITransport``).

Each request runs the app to completion, background tasks included, so a test sees what a
webhook's processing did as soon as the call returns. (Starlette's ``TestClient`` would do the
same but warns when used with ``httpx`` rather than ``httpx2``.)"""

from __future__ import annotations

import anyio
import httpx
from fastapi import FastAPI


class InProcessTransport(httpx.BaseTransport):
    """Runs each request through the app on a fresh event loop."""

    def __init__(self, app: FastAPI) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return anyio.run(call)


def in_process_client(app: FastAPI) -> httpx.Client:
    """An ``httpx.Client`` bound to ``app`` (base URL ``http://testserver``)."""
    return httpx.Client(transport=InProcessTransport(app), base_url="http://testserver")
