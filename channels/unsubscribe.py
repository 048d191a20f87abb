"""Signed unsubscribe links and the RFC 8058 one-click headers that carry them.

A token names a lead and a channel and is signed with HMAC-SHA256 under ``SPIRALE_SECRET_KEY``,
so the unsubscribe endpoint needs no database lookup to trust it and nobody can unsubscribe a lead
whose token they were not sent. Tokens do not expire: an unsubscribe link must keep working for
as long as the message that carried it can be read.

Token layout (URL-safe base64 without padding): ``<payload>.<mac>`` where payload is
``<channel>:<lead_id>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from pydantic import SecretStr

# Domain separation: a MAC made for another purpose with the same secret never verifies here.
_CONTEXT = b"spirale/unsubscribe/v1\x00"
_CHANNEL_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,31}")
_MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True, slots=True)
class UnsubscribeClaim:
    """What a valid token says: this lead asked to stop receiving messages on this channel."""

    lead_id: str
    channel: str


class UnsubscribeSigner:
    """Signs and verifies unsubscribe tokens with one secret key."""

    __slots__ = ("_key",)

    def __init__(self, secret_key: str | bytes | SecretStr) -> None:
        if isinstance(secret_key, SecretStr):
            secret_key = secret_key.get_secret_value()
        key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        if not key:
            raise ValueError("the unsubscribe secret key must not be empty")
        self._key = key

    def sign(self, *, lead_id: str, channel: str) -> str:
        """A token for ``lead_id`` on ``channel`` (``"email"``, ``"sms"``, ``"all"``...)."""
        if not _CHANNEL_PATTERN.fullmatch(channel):
            raise ValueError(f"invalid channel name for an unsubscribe token: {channel!r}")
        if not lead_id:
            raise ValueError("an unsubscribe token needs a lead id")
        payload = f"{channel}:{lead_id}".encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def verify(self, token: str) -> UnsubscribeClaim | None:
        """The claim a token carries, or ``None`` if it is forged, tampered with or malformed."""
        if len(token) > _MAX_TOKEN_LENGTH or token.count(".") != 1:
            return None
        encoded_payload, encoded_mac = token.split(".")
        payload = _b64decode(encoded_payload)
        mac = _b64decode(encoded_mac)
        if payload is None or mac is None or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        channel, separator, lead_id = payload.decode().partition(":")
        if not separator or not lead_id or not _CHANNEL_PATTERN.fullmatch(channel):
            return None
        return UnsubscribeClaim(lead_id=lead_id, channel=channel)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._key, _CONTEXT + payload, hashlib.sha256)


def unsubscribe_url(public_url: str, token: str) -> str:
    """The public unsubscribe page (and RFC 8058 one-click POST target) for ``token``."""
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"


def list_unsubscribe_headers(url: str, mailto: str) -> dict[str, str]:
    """``List-Unsubscribe`` (https link + mailto) and ``List-Unsubscribe-Post`` for one-click
    unsubscription (RFC 2369, RFC 8058), as Gmail and Yahoo require of bulk senders."""
    address = mailto.removeprefix("mailto:")
    return {
        "List-Unsubscribe": f"<{url}>, <mailto:{address}?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Decode unpadded URL-safe base64; ``None`` when the text is not canonical base64."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    # Reject non-canonical spellings so that one token has exactly one accepted form.
    return data if _b64encode(data) == text else None
