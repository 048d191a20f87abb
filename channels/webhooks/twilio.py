"""Twilio's webhooks: SMS status callbacks and inbound messages (STOP / START / HELP keywords).

``X-Twilio-Signature`` is an HMAC-SHA1 of the exact public URL Twilio called plus the sorted form
parameters, keyed by the auth token; the SDK's ``RequestValidator`` checks it. The URL is rebuilt
from ``SPIRALE_PUBLIC_URL`` + path + query, never from the request's own scheme and host, which a
proxy rewrites (and an attacker controls).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from channels.webhooks import NormalizedEvent, PayloadError, SignatureError, dedup_key
from models.tables import EventType

PROVIDER = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
MAX_FIELDS = 200

#: Inbound keywords (the whole trimmed message, any case), per the operators' rules.
OPT_OUT_KEYWORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "end", "quit", "cancel", "revoke", "optout", "arret", "arrêt"}
)
OPT_IN_KEYWORDS = frozenset({"start", "yes", "unstop"})
HELP_KEYWORDS = frozenset({"help", "info"})


class TwilioWebhookVerifier:
    """Checks ``X-Twilio-Signature`` against the configured public URL."""

    def __init__(self, auth_token: str | SecretStr, public_url: str) -> None:
        token = auth_token.get_secret_value() if isinstance(auth_token, SecretStr) else auth_token
        if not token:
            raise ValueError("the Twilio auth token must not be empty")
        self._validator = RequestValidator(token)
        self.public_url = public_url.rstrip("/")

    def url_for(self, path: str, query: str) -> str:
        """The URL Twilio signed: the public base URL, the path and the raw query string."""
        return f"{self.public_url}{path}" + (f"?{query}" if query else "")

    def verify(self, *, path: str, query: str, params: Mapping[str, str], signature: str | None) -> None:
        """Return when the request is Twilio's; raise :class:`SignatureError` otherwise."""
        if not signature:
            raise SignatureError("missing X-Twilio-Signature header")
        if not self._validator.validate(self.url_for(path, query), dict(params), signature):
            raise SignatureError("X-Twilio-Signature does not match the URL and parameters")


def parse_form(body: bytes) -> dict[str, str]:
    """Twilio's ``application/x-www-form-urlencoded`` parameters. A repeated parameter is refused:
    Twilio never sends one, and collapsing it would sign something else than was received."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"Twilio body is not a form: {exc}") from exc
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise PayloadError(f"repeated parameter {name!r}")
        params[name] = value
    return params


def status_event(
    params: Mapping[str, str], *, outbox_id: str | None, idempotency_token: str | None, now: datetime
) -> NormalizedEvent:
    """A status callback (``queued``, ``sent``, ``delivered``, ``undelivered``, ``failed``...)."""
    sid, status = params.get("MessageSid") or params.get("SmsSid"), params.get("MessageStatus")
    if not sid or not status:
        raise PayloadError("a status callback needs MessageSid and MessageStatus")
    key = dedup_key(PROVIDER, "token", idempotency_token) if idempotency_token else None
    return NormalizedEvent(
        type=EventType.SMS_STATUS,
        dedup_key=key or dedup_key(PROVIDER, sid, status),
        occurred_at=now,
        provider=PROVIDER,
        address=params.get("To") or None,
        outbox_id=outbox_id or None,
        provider_message_id=sid,
        payload=dict(params),
    )


def inbound_event(
    params: Mapping[str, str], *, idempotency_token: str | None, now: datetime
) -> NormalizedEvent:
    """An SMS the lead sent: a STOP / START / HELP keyword, or a reply."""
    sid, sender = params.get("MessageSid") or params.get("SmsSid"), params.get("From")
    if not sid or not sender:
        raise PayloadError("an inbound message needs MessageSid and From")
    key = dedup_key(PROVIDER, "token", idempotency_token) if idempotency_token else None
    return NormalizedEvent(
        type=classify(params.get("Body", "")),
        dedup_key=key or dedup_key(PROVIDER, "inbound", sid),
        occurred_at=now,
        provider=PROVIDER,
        address=sender,
        provider_message_id=sid,
        payload=dict(params),
    )


def classify(body: str) -> EventType:
    """The event an inbound SMS stands for: the whole trimmed message, compared without case."""
    word = unicodedata.normalize("NFC", body).strip().casefold()
    if word in OPT_OUT_KEYWORDS:
        return EventType.SMS_STOP
    if word in OPT_IN_KEYWORDS:
        return EventType.SMS_START
    if word in HELP_KEYWORDS:
        return EventType.SMS_HELP
    return EventType.SMS_REPLY
