"""Row ids that sort by creation time (UUID version 7, RFC 9562).

The outbox gains a row per message: with random (version 4) ids, every insert lands on a random
page of the primary-key index, so a batch of a thousand messages rewrites about a thousand pages.
Version 7 ids start with the Unix time in milliseconds, so a batch's ids are neighbours at the end
of the index and its inserts touch a handful of pages. They are still unique and unguessable
(74 random bits) and remain ordinary UUIDs for the database and the API.

Not for enrollments: dispatch shards split enrollments by the first byte of their id
(``models.claims.shard_of``), which must stay random.
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
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION_7
        | (rand & _RANDOM_HIGH)
        | _VARIANT_RFC
        | (rand & _RANDOM_LOW)
    )
    return uuid.UUID(int=value)
