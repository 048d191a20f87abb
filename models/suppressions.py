"""Suppressions: addresses that must never be contacted on a channel (opt-outs, STOP, bounces,
complaints, GDPR erasures).

An entry is keyed by ``(channel, address_hash)``, the SHA-256 of the canonical address, with no key
or salt: the same address always hashes the same, so an erased lead (whose clear address is dropped,
``keep_address=False``) stays blocked when it is imported again. The dispatcher checks a whole batch
of recipients at send time with ONE query (:func:`suppressed_hashes`).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, Insert, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from models.leads import normalize_email, normalize_phone
from models.tables import Suppression

SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[attr-defined]
CHANNELS = frozenset({"email", "sms"})
# SQLite allows 32,766 bound parameters per statement; batches are far smaller in practice.
MAX_HASHES_PER_QUERY = 30_000

# Already-canonical addresses (what ``models.leads`` stores) take these fast paths; anything else goes
# through the full normalization. Hashing runs for every recipient at send time.
_CANONICAL_EMAIL = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@[a-z0-9-]+(\.[a-z0-9-]+)+")
_CANONICAL_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")


def _check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"unknown suppression channel {channel!r}: expected one of {sorted(CHANNELS)}")
    return channel


def canonical_address(channel: str, address: str) -> str:
    """The form of ``address`` that is hashed: what :func:`normalize_email` / :func:`normalize_phone`
    give. An address they reject (a malformed bounce, a short code) is still suppressible: it is
    hashed in a trimmed, lowercased (email) or digits-only (SMS) form, which no stored lead can have
    but a repeat of the same bad address will match."""
    text = address.strip()
    if _check_channel(channel) == "email":
        text = text.lower()
        # Punycode domains are shown in Unicode by the normalization, so they take the slow path.
        if "xn--" not in text and _CANONICAL_EMAIL.fullmatch(text):
            return text
        try:
            return normalize_email(text)
        except ValueError:
            return unicodedata.normalize("NFC", text)
    if _CANONICAL_PHONE.fullmatch(text):
        return text
    try:
        return normalize_phone(text)
    except ValueError:
        return re.sub(r"[^0-9+]", "", text)


def address_hash(channel: str, address: str) -> str:
    """SHA-256 (hex) of the canonical address on ``channel`` (``email`` or ``sms``)."""
    return hashlib.sha256(canonical_address(channel, address).encode()).hexdigest()


def _insert_ignoring_duplicates(conn: Connection) -> Insert:
    keys = ["channel", "address_hash"]
    if conn.dialect.name == "postgresql":
        return postgresql.insert(SUPPRESSIONS).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(SUPPRESSIONS).on_conflict_do_nothing(index_elements=keys)


def suppress(
    conn: Connection,
    *,
    channel: str,
    address: str,
    reason: str,
    source: str | None,
    now: datetime,
    keep_address: bool = True,
) -> bool:
    """Suppress ``address`` on ``channel``. Idempotent: returns ``False`` when it already was
    (the first entry, with its reason and date, is kept). ``keep_address=False`` stores only the
    hash (GDPR erasure). The caller commits."""
    canonical = canonical_address(channel, address)
    values = {
        "id": uuid.uuid4(),
        "channel": channel,
        "address_hash": hashlib.sha256(canonical.encode()).hexdigest(),
        "address": canonical if keep_address else None,
        "reason": reason,
        "source": source,
        "created_at": now,
    }
    # RETURNING, not rowcount: psycopg reports no rowcount for this INSERT.
    inserted = conn.execute(_insert_ignoring_duplicates(conn).values(values).returning(SUPPRESSIONS.c.id))
    return inserted.first() is not None


def unsuppress(conn: Connection, *, channel: str, address: str) -> bool:
    """Lift the suppression of ``address`` on ``channel`` (an SMS START, a resubscribe);
    returns whether there was one."""
    statement = delete(SUPPRESSIONS).where(
        SUPPRESSIONS.c.channel == channel, SUPPRESSIONS.c.address_hash == address_hash(channel, address)
    )
    return conn.execute(statement).rowcount > 0


def suppressed_hashes(conn: Connection, *, channel: str, hashes: Collection[str]) -> set[str]:
    """The members of ``hashes`` suppressed on ``channel``: one query per batch (up to
    ``MAX_HASHES_PER_QUERY`` hashes)."""
    _check_channel(channel)
    wanted = list(set(hashes))
    found: set[str] = set()
    if conn.dialect.name == "sqlite":
        # One JSON array instead of thousands of bound parameters that SQLAlchemy expands per call.
        sql = (
            "SELECT address_hash FROM suppressions WHERE channel = ? "
            "AND address_hash IN (SELECT value FROM json_each(?))"
        )
        return {row[0] for row in conn.exec_driver_sql(sql, (channel, json.dumps(wanted))).fetchall()}
    for start in range(0, len(wanted), MAX_HASHES_PER_QUERY):
        chunk = wanted[start : start + MAX_HASHES_PER_QUERY]
        statement = select(SUPPRESSIONS.c.address_hash).where(
            SUPPRESSIONS.c.channel == channel, SUPPRESSIONS.c.address_hash.in_(chunk)
        )
        found.update(conn.execute(statement).scalars())
    return found


def is_suppressed(conn: Connection, *, channel: str, address: str) -> bool:
    """Whether ``address`` is suppressed on ``channel``."""
    return bool(suppressed_hashes(conn, channel=channel, hashes=[address_hash(channel, address)]))
