"""SendGrid's signed Event Webhook.

SendGrid signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256 and sends the base64 DER
signature and the timestamp in ``X-Twilio-Email-Event-Webhook-Signature`` / ``-Timestamp``. The
SDK's ``EventWebhook`` verifies it over the exact bytes received (re-serialized JSON would fail).
A request older than ``max_age`` (or from the future beyond ``skew``) is refused, so a captured
request cannot be replayed later; a replay inside that window is caught by the event dedup key
(``sg_message_id``, ``event``, ``timestamp``), since ``sg_event_id`` can change between retries.
"""

from __future__ import annotations

import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sendgrid.helpers.eventwebhook import EventWebhook

from channels.webhooks import NormalizedEvent, PayloadError, SignatureError, dedup_key
from models.tables import EventType
from spirale.errors import ConfigError

logger = logging.getLogger(__name__)

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE = timedelta(minutes=10)
CLOCK_SKEW = timedelta(minutes=1)

#: SendGrid event names -> normalized types. Anything else is ignored (logged).
EVENT_TYPES: dict[str, EventType] = {
    "processed": EventType.PROCESSED,
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "bounce": EventType.BOUNCE,
    "dropped": EventType.DROPPED,
    "open": EventType.OPEN,
    "click": EventType.CLICK,
    "spamreport": EventType.SPAM_REPORT,
    "unsubscribe": EventType.UNSUBSCRIBE,
    "group_unsubscribe": EventType.UNSUBSCRIBE,
    "group_resubscribe": EventType.RESUBSCRIBE,
}


class SendGridWebhookVerifier:
    """Checks signed Event Webhook requests against the account's verification key."""

    def __init__(
        self, public_key: str, *, max_age: timedelta = MAX_AGE, skew: timedelta = CLOCK_SKEW
    ) -> None:
        self._webhook = EventWebhook()
        try:
            self._key = self._webhook.convert_public_key_to_ecdsa(_key_body(public_key))
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "SPIRALE_SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA public key "
                "(paste the 'Verification Key' of the signed Event Webhook)"
            ) from exc
        self.max_age = max_age
        self.skew = skew

    def verify(self, body: bytes, signature: str | None, timestamp: str | None, *, now: datetime) -> None:
        """Return when the request is authentic and fresh; raise :class:`SignatureError` otherwise."""
        if not signature or not timestamp:
            raise SignatureError("missing SendGrid signature or timestamp header")
        self._check_age(timestamp, now)
        try:
            text = body.decode("utf-8")
            valid = self._webhook.verify_signature(text, signature, timestamp, self._key)
        except (UnicodeDecodeError, binascii.Error, ValueError) as exc:
            raise SignatureError(f"malformed SendGrid signature or body: {type(exc).__name__}") from exc
        if not valid:
            raise SignatureError("SendGrid signature does not match the body")

    def _check_age(self, timestamp: str, now: datetime) -> None:
        try:
            signed_at = datetime.fromtimestamp(int(timestamp), UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise SignatureError("SendGrid timestamp is not an epoch time") from exc
        if signed_at < now - self.max_age:
            raise SignatureError(f"stale SendGrid request (signed {now - signed_at} ago)")
        if signed_at > now + self.skew:
            raise SignatureError("SendGrid request signed in the future")


def _key_body(public_key: str) -> str:
    """The base64 body of the key, whether given bare (as SendGrid shows it) or as PEM."""
    lines = [line.strip() for line in public_key.strip().splitlines()]
    return "".join(line for line in lines if line and not line.startswith("-----"))


@dataclass
class ParsedBatch:
    """The normalized events of one webhook request, and how many items were ignored."""

    events: list[NormalizedEvent] = field(default_factory=list)
    ignored: int = 0


def _not_json(constant: str) -> None:
    # Python's json reads NaN and Infinity, which JSON (and PostgreSQL's json type) has not: such a
    # value becomes null, so the event is stored instead of failing at the insert.
    return None


def parse_events(body: bytes) -> ParsedBatch:
    """Normalize a verified Event Webhook body (a JSON array of events).

    Raises :class:`PayloadError` when the body is not a JSON array; single items that are not
    SendGrid events (unknown type, no timestamp) are skipped and counted, so one odd item never
    makes SendGrid retry a whole batch forever.
    """
    try:
        items = json.loads(body, parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"SendGrid body is not JSON: {type(exc).__name__}") from exc
    if not isinstance(items, list):
        raise PayloadError("SendGrid body is not a JSON array of events")
    batch = ParsedBatch()
    for item in items:
        event = _normalize(item) if isinstance(item, dict) else None
        if event is None:
            batch.ignored += 1
        else:
            batch.events.append(event)
    if batch.ignored:
        logger.info("ignored %d SendGrid webhook item(s) of unknown shape or type", batch.ignored)
    return batch


def _normalize(item: Mapping[str, Any]) -> NormalizedEvent | None:
    kind = EVENT_TYPES.get(str(item.get("event", "")))
    timestamp = item.get("timestamp")
    if kind is None or isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return None
    try:
        occurred_at = datetime.fromtimestamp(timestamp, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    message_id = _text(item.get("sg_message_id"))
    identity = message_id or _text(item.get("sg_event_id")) or json.dumps(item, sort_keys=True)
    return NormalizedEvent(
        type=kind,
        dedup_key=dedup_key(PROVIDER, identity, item.get("event"), timestamp),
        occurred_at=occurred_at,
        provider=PROVIDER,
        address=_text(item.get("email")),
        outbox_id=_text(item.get("outbox_id")),
        lead_hint=_text(item.get("lead_id")),
        # sg_message_id is "<X-Message-Id>.<filter suffix>": the first part is what mail/send returned.
        provider_message_id=message_id.split(".", 1)[0] if message_id else None,
        payload=dict(item),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
