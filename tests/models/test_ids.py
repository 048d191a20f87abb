"""Outbox ids: RFC 9562 version 7 UUIDs that sort by creation time."""

from __future__ import annotations

import time
import uuid

from models.ids import ordered_id


def test_ids_are_version_7_rfc_uuids_with_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    value = ordered_id()
    after = time.time_ns() // 1_000_000
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after
    assert uuid.UUID(str(value)) == value


def test_ids_sort_by_time_and_never_repeat() -> None:
    first = [ordered_id() for _ in range(2000)]
    time.sleep(0.002)
    second = [ordered_id() for _ in range(2000)]
    assert len(set(first + second)) == 4000
    assert max(first) < min(second)  # a later millisecond sorts after
    # 74 random bits: ids of one millisecond differ beyond the timestamp and the fixed bits.
    assert len({value.int & ((1 << 62) - 1) for value in first}) == 2000
