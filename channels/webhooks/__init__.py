"""Inbound provider webhooks: verify the signature first, then parse into normalized events.

Each provider module (``sendgrid.py``, ``twilio.py``) checks the request with the provider SDK's own
verifier and turns the payload into :class:`NormalizedEvent` values, keeping the raw provider
payload beside each one. Storing and acting on the events is ``spirale.events``' job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.tables import EventType
from spirale.errors import SpiraleError


class SignatureError(SpiraleError):
    """A webhook request failed verification (bad or missing signature, stale timestamp). The
    message says why, for the log; the HTTP answer is a bare 403."""


class PayloadError(SpiraleError):
    """A verified webhook request whose body is not what the provider sends."""


@dataclass(frozen=True, slots=True)
class NormalizedEvent:
    """One provider event, ready to store.

    ``outbox_id`` and ``lead_hint`` are what the provider echoed back (custom args, callback URL):
    hints to resolve against the database, never trusted as foreign keys. ``address`` is the email
    or phone number the event is about; ``provider_message_id`` the provider's message id.
    """

    type: EventType
    dedup_key: str
    occurred_at: datetime
    provider: str
    address: str | None = None
    outbox_id: str | None = None
    lead_hint: str | None = None
    provider_message_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def dedup_key(provider: str, *parts: object) -> str:
    """``provider:`` + SHA-256 of the parts: the same provider event always gives the same key."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()
    return f"{provider}:{digest}"
