"""What every endpoint of the API shares: settings, database, clock, forms, verifiers, and the
hooks that start work elsewhere (the intake flow, event processing)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime

from fastapi import HTTPException, Request
from sqlalchemy import Engine

from channels.unsubscribe import UnsubscribeSigner
from channels.webhooks.sendgrid import SendGridWebhookVerifier
from channels.webhooks.twilio import TwilioWebhookVerifier
from sequences.catalog import SequenceCatalog
from sequences.forms import FormSpec
from spirale.settings import Settings


@dataclass(frozen=True, slots=True)
class AcceptedSubmission:
    """A form submission stored durably: what the intake trigger receives.

    ``submission_id`` is the ``form_submissions`` row, ``submission_key`` its idempotency key
    (use it as the idempotency key of a flow run), ``lead_id`` the id the lead has or will get."""

    submission_id: uuid.UUID
    submission_key: str
    form_id: str
    sequence: str
    lead_id: uuid.UUID
    new: bool


#: Starts the intake of a stored submission (emit an event, run a deployment...). It may raise:
#: the submission then simply waits for the next intake run.
StartIntake = Callable[[AcceptedSubmission], object]


@dataclass
class ApiContext:
    """The API's shared state (one per app)."""

    settings: Settings
    engine: Engine
    clock: Callable[[], datetime]
    forms: dict[str, FormSpec]
    catalog: SequenceCatalog
    signer: UnsubscribeSigner
    sendgrid: SendGridWebhookVerifier | None
    twilio: TwilioWebhookVerifier | None
    start_intake: StartIntake | None
    on_events: Callable[[], None] | None

    def __post_init__(self) -> None:
        # SQLite has one writer at a time; queueing writers here is far cheaper than letting them
        # spin on the database's busy timeout.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the process's SQLite write turn (nothing on PostgreSQL)."""
        with self._write_lock if self._write_lock is not None else nullcontext():
            yield


def get_context(request: Request) -> ApiContext:
    """The context of the app serving ``request``."""
    context: ApiContext = request.app.state.context
    return context


async def read_body(request: Request, *, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status_code=413, detail=f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
