"""Putting leads into a sequence. Bulk and idempotent: a lead already live in the sequence is left
alone (the partial unique index ``ux_enrollments_live`` guarantees one live enrollment per lead and
sequence, even with concurrent enrollers). The first step is due at enrollment unless it has a
``wait``, moved into its channel's window in the lead's time zone."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, select

from models.ids import ordered_id
from models.tables import LIVE_ENROLLMENT_STATES, Enrollment, EnrollmentState, Lead
from sequences.planner import DuePlanner, lead_zone
from sequences.schema import Sequence as SequenceSpec
from spirale.dispatch.writes import insert_ignoring_duplicates

ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
CHUNK = 5000


@dataclass(frozen=True)
class EnrollResult:
    """How many leads were enrolled now, and how many were already live in the sequence."""

    enrolled: int
    already: int


def enroll_leads(
    conn: Connection,
    *,
    lead_ids: Iterable[uuid.UUID],
    sequence: SequenceSpec,
    version: str,
    now: datetime,
) -> EnrollResult:
    """Enroll leads into ``sequence`` (caller commits). Unknown lead ids are ignored."""
    enrolled = already = 0
    ids = list(dict.fromkeys(lead_ids))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows, live = _first_due_rows(conn, chunk, sequence, version, now)
        inserted = insert_ignoring_duplicates(conn, ENROLLMENTS, rows)
        if inserted < 0:  # the driver does not count an executemany: count the live rows instead
            inserted = len(rows) - _already_live(conn, sequence.name, rows)
        enrolled += inserted
        # Live when read, or enrolled by a concurrent enroller since (the unique index said so).
        already += live + len(rows) - inserted
    return EnrollResult(enrolled=enrolled, already=already)


def _first_due_rows(
    conn: Connection, lead_ids: Sequence[uuid.UUID], sequence: SequenceSpec, version: str, now: datetime
) -> tuple[list[dict[str, object]], int]:
    """New enrollment rows for the leads of ``lead_ids`` not live in ``sequence`` yet, and how many
    are (skipped here, so that re-running an enrollment is a read, not a thousand refused inserts)."""
    is_live = (
        select(ENROLLMENTS.c.id)
        .where(
            ENROLLMENTS.c.lead_id == LEADS.c.id,
            ENROLLMENTS.c.sequence_name == sequence.name,
            ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES),
        )
        .exists()
    )
    query = select(LEADS.c.id, LEADS.c.timezone, LEADS.c.country, is_live).where(LEADS.c.id.in_(lead_ids))
    zones: dict[tuple[str, str], tuple[ZoneInfo, str]] = {}
    # Everyone is enrolled at the same ``now``: the window placement of the first due time is
    # computed once per due minute, zone and country, not once per lead.
    planner = DuePlanner()
    rows: list[dict[str, object]] = []
    live = 0
    for lead_id, timezone, country, already in conn.execute(query):
        if already:
            live += 1
            continue
        key = (timezone or "", country or "")
        zone = zones.get(key)
        if zone is None:
            zone = zones[key] = lead_zone(sequence, {"timezone": timezone or "", "country": country or ""})
        tz, lead_country = zone
        due = planner.next_due(sequence, 0, now, tz=tz, country=lead_country, lead_key=str(lead_id)).at
        rows.append(
            {
                "id": ordered_id(),
                "lead_id": lead_id,
                "sequence_name": sequence.name,
                "sequence_version": version,
                "step_index": 0,
                "cycle": 0,
                "state": EnrollmentState.ACTIVE.value,
                "next_due_at": due,
                "last_step_at": None,
                "exit_reason": None,
                "enrolled_at": now,
                "updated_at": now,
                "claimed_by": None,
                "lease_until": None,
            }
        )
    return rows, live


def _already_live(conn: Connection, sequence_name: str, rows: list[dict[str, object]]) -> int:
    """How many of ``rows`` were not inserted: their lead's live enrollment is another row."""
    ours = {row["id"] for row in rows}
    query = select(ENROLLMENTS.c.id).where(
        ENROLLMENTS.c.lead_id.in_([row["lead_id"] for row in rows]),
        ENROLLMENTS.c.sequence_name == sequence_name,
        ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES),
    )
    return sum(1 for enrollment_id in conn.execute(query).scalars() if enrollment_id not in ours)
