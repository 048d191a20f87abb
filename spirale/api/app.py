"""The HTTP API: form intake, provider webhooks, unsubscribe links, sales task outcomes and
conversions. ``create_app`` refuses to build an API over an unmigrated database."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from channels.base import AnyChannel
from channels.unsubscribe import UnsubscribeSigner
from channels.webhooks.sendgrid import SendGridWebhookVerifier
from channels.webhooks.twilio import TwilioWebhookVerifier
from models.db import make_engine, require_migrated
from sequences.catalog import SequenceCatalog
from sequences.forms import forms_path, load_forms
from spirale.api import conversions, forms, tasks, unsubscribe, webhooks
from spirale.api.context import ApiContext, StartIntake
from spirale.clock import utcnow
from spirale.events import process_events
from spirale.settings import Settings

logger = logging.getLogger(__name__)
#: Events applied per transaction after a webhook: small, so the database's write lock is held
#: briefly and form submissions never wait long behind a burst of events.
WEBHOOK_BATCH = 500


def create_app(
    settings: Settings,
    *,
    start_intake: StartIntake | None = None,
    clock: Callable[[], datetime] = utcnow,
    process_webhook_events: bool = True,
    channels: Mapping[str, AnyChannel] | None = None,
) -> FastAPI:
    """The API for ``settings``. Raises ``ConfigError`` when the database is not migrated or a
    configuration file is invalid.

    ``start_intake`` starts the intake of each stored form submission (a Prefect event or
    deployment run); without it submissions wait for the next intake run. With
    ``process_webhook_events`` the API applies webhook events right after answering (a STOP is
    honoured at once); ``channels`` then serves HELP answers (default: from the settings).
    """
    engine = make_engine(settings.database_url)
    require_migrated(engine)
    catalog = SequenceCatalog.open(settings.sequences_dir)
    context = ApiContext(
        settings=settings,
        engine=engine,
        clock=clock,
        forms=load_forms(forms_path(settings.sequences_dir)),
        catalog=catalog,
        signer=UnsubscribeSigner(settings.secret_key),
        sendgrid=_sendgrid_verifier(settings),
        twilio=_twilio_verifier(settings),
        start_intake=start_intake,
        on_events=None,
    )
    if process_webhook_events:
        context.on_events = webhooks.EventPump(
            lambda: process_events(
                engine,
                now=clock(),
                settings=settings,
                limit=WEBHOOK_BATCH,
                channels=channels,
                catalog=catalog,
            )
        )
    _log_configuration(context)
    app = FastAPI(title="Spirale", version="1", docs_url="/docs", redoc_url=None)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.state.context = context
    for module in (forms, webhooks, unsubscribe, tasks, conversions):
        app.include_router(module.router)
    app.add_api_route("/health", health, methods=["GET"])
    return app


async def health() -> JSONResponse:
    """Liveness: the process answers (the database was checked when the app was built)."""
    return JSONResponse({"status": "ok"})


def _sendgrid_verifier(settings: Settings) -> SendGridWebhookVerifier | None:
    key = settings.sendgrid_webhook_public_key
    return SendGridWebhookVerifier(key) if key else None


def _twilio_verifier(settings: Settings) -> TwilioWebhookVerifier | None:
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        return None
    return TwilioWebhookVerifier(token, settings.public_url)


def _log_configuration(context: ApiContext) -> None:
    if context.start_intake is None:
        logger.info(
            "no intake trigger: form submissions are stored and wait for the next intake run "
            "(spirale serve starts intake runs at once)"
        )
    if context.sendgrid is None:
        logger.warning("SPIRALE_SENDGRID_WEBHOOK_PUBLIC_KEY is not set: SendGrid webhooks are refused (403)")
    if context.twilio is None:
        logger.warning("SPIRALE_TWILIO_AUTH_TOKEN is not set: Twilio webhooks are refused (403)")


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each faulty field, without echoing the submitted input (it may be any bytes,
    which FastAPI's default handler fails to encode: a 500)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
    ]
    return JSONResponse(status_code=422, content={"detail": detail})
