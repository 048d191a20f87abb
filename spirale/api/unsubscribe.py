"""Unsubscribe links: ``GET /unsubscribe/{token}`` and the RFC 8058 one-click ``POST``.

The token (``channels.unsubscribe``) is signed: a forged or altered one answers 404 and changes
nothing. ``POST`` (what mail clients send for one-click, with no cookie or session) suppresses the
lead's address on the token's channel and exits its marketing enrollments. ``GET`` only shows a
page whose single button makes that ``POST``: RFC 8058 exists because mail software and link
scanners fetch URLs on their own, and a fetch must not unsubscribe anyone.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection, Table, select
from starlette.concurrency import run_in_threadpool

from channels.webhooks import NormalizedEvent, dedup_key
from models.tables import EventType, Lead
from spirale.api.context import ApiContext, get_context
from spirale.events import store_events
from spirale.events_resolve import as_uuid
from spirale.optouts import opt_out

router = APIRouter()

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
CHANNELS = {"email": ("email",), "sms": ("sms",), "all": ("email", "sms")}
EVENT_TYPES = {"email": EventType.UNSUBSCRIBE, "sms": EventType.SMS_STOP}
_NOUNS = {"email": "e-mails", "sms": "SMS", "all": "messages"}


# ``:path`` so that a token with a slash is refused (404) instead of redirected (307).
@router.get("/unsubscribe/{token:path}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request) -> HTMLResponse:
    """The confirmation page: one button that unsubscribes (nothing changes on GET)."""
    context = get_context(request)
    claim = _claim(context, token)
    if claim is None:
        return _not_found()
    sender = html.escape(context.settings.sender_name)
    noun = _NOUNS[claim.channel]
    body = (
        f"<h1>Se désinscrire</h1><p>Vous ne recevrez plus de {noun} de {sender}.</p>"
        '<form method="post"><button type="submit">Confirmer la désinscription</button></form>'
    )
    return _page(body)


@router.post("/unsubscribe/{token:path}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """RFC 8058 one-click: suppress the address and exit marketing enrollments."""
    context = get_context(request)
    claim = _claim(context, token)
    if claim is None:
        return _not_found()
    await run_in_threadpool(unsubscribe_lead, context, claim.lead_uuid, claim.channel)
    sender = html.escape(context.settings.sender_name)
    return _page(f"<h1>C'est fait</h1><p>Vous ne recevrez plus de {_NOUNS[claim.channel]} de {sender}.</p>")


def unsubscribe_lead(context: ApiContext, lead_id: uuid.UUID, channel: str) -> None:
    """Suppress the lead's address(es) and exit its marketing enrollments, at once; record the
    event for scoring and for the dispatcher's ``exit_when``. An erased lead needs nothing more."""
    now = context.clock()
    with context.writing(), context.engine.begin() as conn:
        lead = conn.execute(select(LEADS.c.email, LEADS.c.phone).where(LEADS.c.id == lead_id)).first()
        if lead is None:
            return
        for kind in CHANNELS[channel]:
            address = lead.email if kind == "email" else lead.phone
            if address:
                _opt_out(context, conn, lead_id, kind, address, now)


def _opt_out(
    context: ApiContext, conn: Connection, lead_id: uuid.UUID, kind: str, address: str, now: datetime
) -> None:
    opt_out(
        conn,
        channel=kind,
        address=address,
        lead_ids=[lead_id],
        reason="unsubscribed",
        source="unsubscribe-link",
        occurred_at=now,
        now=now,
        catalog=context.catalog,
    )
    event = NormalizedEvent(
        type=EVENT_TYPES[kind],
        dedup_key=dedup_key("link", lead_id, kind, now.date().isoformat()),
        occurred_at=now,
        provider="link",
        lead_hint=str(lead_id),
        payload={"channel": kind, "source": "unsubscribe-link"},
    )
    store_events(conn, [event], received_at=now)


@dataclass(frozen=True, slots=True)
class _Claim:
    lead_uuid: uuid.UUID
    channel: str


def _claim(context: ApiContext, token: str) -> _Claim | None:
    """What a genuine token asks; ``None`` for a forged one or one naming no lead or channel."""
    claim = context.signer.verify(token)
    lead_id = as_uuid(claim.lead_id) if claim is not None else None
    if claim is None or lead_id is None or claim.channel not in CHANNELS:
        return None
    return _Claim(lead_id, claim.channel)


def _page(body: str, status_code: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Désinscription</title></head>"
        f'<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">{body}</body></html>'
    )
    return HTMLResponse(document, status_code=status_code, headers={"Cache-Control": "no-store"})


def _not_found() -> HTMLResponse:
    return _page("<h1>Lien invalide</h1><p>Ce lien de désinscription n'est pas valide.</p>", 404)
