"""Row ids that sort by creation time (UUID version 7, RFC 9562).

Leads, enrollments and outbox rows get them. With random (version 4) ids, every insert lands on a
random page of each index that starts with an id, so a dispatch batch of a thousand messages
rewrites about a thousand pages of the outbox's ``(enrollment_id, ...)`` and ``(lead_id, ...)``
indexes, and its enrollment lookups read as many. Version 7 ids start with the Unix time in
milliseconds: leads imported and enrolled together are neighbours, so are the rows a batch
touches. They are still unique and unguessable (74 random bits) and remain ordinary UUIDs for the
database and the API. Dispatch shards use a lead id's last byte, which is random (``models.claims``).
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62
_RANDOM_LOW = (1 << 62) - 1
_RANDOM_HIGH = 0xFFF << 64


def ordered_id() -> uuid.UUID:
    """A new version 7 UUID: 48 bits of Unix milliseconds, then 74 random bits."""
    return uuid.UUID(int=_ordered_int())


def ordered_hex() -> str:
    """``ordered_id().hex`` without building the UUID object: the form SQLite stores, for bulk
    writes that hand the driver values in storage format (``models.bulk``)."""
    return f"{_ordered_int():032x}"


def _ordered_int() -> int:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION_7
        | (rand & _RANDOM_HIGH)
        | _VARIANT_RFC
        | (rand & _RANDOM_LOW)
    )
