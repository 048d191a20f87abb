"""Provider webhooks: SendGrid's Event Webhook and Twilio's status and inbound SMS callbacks.

Every request is verified with the provider SDK's verifier before anything is read from it; a
failure answers a bare 403 and changes nothing (the reason goes to the log only). Verified events
are stored idempotently (a replay stores nothing) and handed to event processing, which runs
right after the answer so a STOP is honoured before the next dispatch tick. A storage error
answers 500, so the provider retries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from channels.webhooks import NormalizedEvent, PayloadError, SignatureError
from channels.webhooks import sendgrid as sendgrid_hook
from channels.webhooks import twilio as twilio_hook
from spirale.api.context import ApiContext, get_context, read_body
from spirale.events import EventsReport, StoreResult, store_events

logger = logging.getLogger(__name__)
router = APIRouter()

SENDGRID_MAX_BODY = 8 * 1024 * 1024  # SendGrid posts batches of events
TWILIO_MAX_BODY = 64 * 1024
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _forbidden(provider: str, reason: str) -> Response:
    logger.warning("rejected %s webhook: %s", provider, reason)
    return Response(status_code=403)


@router.post("/webhooks/sendgrid")
async def sendgrid_events(request: Request) -> Response:
    """Signed Event Webhook: verify over the raw body, store new events, process them."""
    context = get_context(request)
    body = await read_body(request, limit=SENDGRID_MAX_BODY)
    if context.sendgrid is None:
        return _forbidden("SendGrid", "SPIRALE_SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    try:
        context.sendgrid.verify(
            body,
            request.headers.get(sendgrid_hook.SIGNATURE_HEADER),
            request.headers.get(sendgrid_hook.TIMESTAMP_HEADER),
            now=context.clock(),
        )
    except SignatureError as exc:
        return _forbidden("SendGrid", str(exc))
    try:
        batch = sendgrid_hook.parse_events(body)
    except PayloadError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    result = await run_in_threadpool(_store, context, batch.events)
    return JSONResponse(
        {"stored": result.stored, "duplicates": result.duplicates, "ignored": batch.ignored},
        background=_processing(context, result),
    )


@router.post("/webhooks/twilio/status")
async def twilio_status(request: Request) -> Response:
    """A status callback of an SMS we sent; the outbox id is in the callback URL's query."""
    context = get_context(request)
    params = await _verified_twilio(request, context)
    if isinstance(params, Response):
        return params
    try:
        event = twilio_hook.status_event(
            params,
            outbox_id=request.query_params.get("outbox_id"),
            idempotency_token=request.headers.get(twilio_hook.IDEMPOTENCY_HEADER),
            now=context.clock(),
        )
    except PayloadError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    result = await run_in_threadpool(_store, context, [event])
    return Response(status_code=204, background=_processing(context, result))


@router.post("/webhooks/twilio/inbound")
async def twilio_inbound(request: Request) -> Response:
    """An SMS from a lead: STOP / START / HELP keywords, or a reply. Answers empty TwiML: the HELP
    text is sent by event processing, once per inbound message."""
    context = get_context(request)
    params = await _verified_twilio(request, context)
    if isinstance(params, Response):
        return params
    try:
        event = twilio_hook.inbound_event(
            params,
            idempotency_token=request.headers.get(twilio_hook.IDEMPOTENCY_HEADER),
            now=context.clock(),
        )
    except PayloadError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    result = await run_in_threadpool(_store, context, [event])
    return Response(EMPTY_TWIML, media_type="text/xml", background=_processing(context, result))


async def _verified_twilio(request: Request, context: ApiContext) -> dict[str, str] | Response:
    body = await read_body(request, limit=TWILIO_MAX_BODY)
    if context.twilio is None:
        return _forbidden("Twilio", "SPIRALE_TWILIO_AUTH_TOKEN is not set")
    try:
        params = twilio_hook.parse_form(body)
        context.twilio.verify(
            path=request.url.path,
            query=request.url.query,
            params=params,
            signature=request.headers.get(twilio_hook.SIGNATURE_HEADER),
        )
    except (PayloadError, SignatureError) as exc:
        return _forbidden("Twilio", str(exc))
    return params


def _store(context: ApiContext, events: Sequence[NormalizedEvent]) -> StoreResult:
    with context.writing(), context.engine.begin() as conn:
        return store_events(conn, events, received_at=context.clock())


def _processing(context: ApiContext, result: StoreResult) -> BackgroundTask | None:
    if result.stored and context.on_events is not None:
        return BackgroundTask(context.on_events)
    return None


class EventPump:
    """Runs event processing after webhooks, one run at a time per process: a request arriving
    during a run asks for one more run instead of starting a second one beside it."""

    def __init__(self, run: Callable[[], EventsReport]) -> None:
        self._run = run
        self._busy = threading.Lock()
        self._wanted = threading.Event()

    def __call__(self) -> None:
        """Process stored events now (blocking); returns at once if another thread is on it."""
        self._wanted.set()
        while self._wanted.is_set() and self._busy.acquire(blocking=False):
            try:
                while self._wanted.is_set():
                    self._wanted.clear()
                    self._drain()
            finally:
                self._busy.release()

    def _drain(self) -> None:
        try:
            while self._run().more:
                pass
        except Exception:
            # The events stay unprocessed in the database: the scheduled process_events run
            # retries them, and its failure is visible there.
            logger.exception("event processing after a webhook failed")
