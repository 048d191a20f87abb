"""Putting leads into a sequence. Bulk and idempotent: a lead already live in the sequence is left
alone (the partial unique index ``ux_enrollments_live`` guarantees one live enrollment per lead and
sequence, even with concurrent enrollers). The first step is due at enrollment unless it has a
``wait``, moved into its channel's window in the lead's time zone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, String, Table, bindparam, func, select, type_coerce

from models.bulk import SqliteWriter, insert_sqlite_values
from models.ids import ordered_hex, ordered_id
from models.tables import LIVE_ENROLLMENT_STATES, Enrollment, EnrollmentState, Lead
from sequences.planner import DuePlanner, lead_zone
from sequences.schema import Sequence as SequenceSpec
from spirale.dispatch.writes import insert_ignoring_duplicates

ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
CHUNK = 5000
ACTIVE = EnrollmentState.ACTIVE.value
# The columns a new enrollment is written with (the others start NULL), in the order of the values.
COLUMNS = (
    "id",
    "lead_id",
    "sequence_name",
    "sequence_version",
    "step_index",
    "cycle",
    "state",
    "next_due_at",
    "enrolled_at",
    "updated_at",
)


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
    new = _NewEnrollments(sequence, version, now)
    for start in range(0, len(ids), CHUNK):
        candidates, live = _candidates(conn, ids[start : start + CHUNK], sequence.name)
        if conn.dialect.name == "sqlite":
            # Rows go to the driver in storage format: SQLAlchemy's per-value processing of
            # ids and instants would cost more than SQLite's own insert.
            values = [new.sqlite_row(*candidate) for candidate in candidates]
            inserted = insert_sqlite_values(conn, ENROLLMENTS, COLUMNS, values, ignore_duplicates=True)
        else:
            rows = [new.row(*candidate) for candidate in candidates]
            inserted = insert_ignoring_duplicates(conn, ENROLLMENTS, rows)
            if inserted < 0:  # the driver does not count an executemany: count the live rows instead
                inserted = len(rows) - _already_live(conn, sequence.name, rows)
        enrolled += inserted
        # Live when read, or enrolled by a concurrent enroller since (the unique index said so).
        already += live + len(candidates) - inserted
    return EnrollResult(enrolled=enrolled, already=already)


class _NewEnrollments:
    """The rows of leads enrolled into one sequence at ``now``. Step 0's window placement is
    computed once per due minute, zone and country (everyone shares ``now``), not once per lead."""

    def __init__(self, sequence: SequenceSpec, version: str, now: datetime) -> None:
        self.sequence = sequence
        self.version = version
        self.now = now
        self.planner = DuePlanner()
        self.zones: dict[tuple[str, str], tuple[ZoneInfo, str]] = {}
        self.instant = SqliteWriter().instant
        self.stamp = self.instant(now)

    def first_due(self, lead_key: str, timezone: str | None, country: str | None) -> datetime:
        key = (timezone or "", country or "")
        zone = self.zones.get(key)
        if zone is None:
            zone = self.zones[key] = lead_zone(self.sequence, {"timezone": key[0], "country": key[1]})
        tz, lead_country = zone
        placed = self.planner.next_due(
            self.sequence, 0, self.now, tz=tz, country=lead_country, lead_key=lead_key
        )
        return placed.at

    def row(
        self, lead: uuid.UUID, lead_key: str, timezone: str | None, country: str | None
    ) -> dict[str, Any]:
        """A row for Core, in ``COLUMNS``."""
        due = self.first_due(lead_key, timezone, country)
        values = (ordered_id(), lead, self.sequence.name, self.version, 0, 0, ACTIVE, due, self.now, self.now)
        return dict(zip(COLUMNS, values, strict=True))

    def sqlite_row(
        self, lead: str, lead_key: str, timezone: str | None, country: str | None
    ) -> tuple[Any, ...]:
        """The same row in SQLite storage format (``lead`` is the stored hex id)."""
        due = self.instant(self.first_due(lead_key, timezone, country))
        name, version, stamp = self.sequence.name, self.version, self.stamp
        return (ordered_hex(), lead, name, version, 0, 0, ACTIVE, due, stamp, stamp)


# (lead id as the database gives it, the lead's key for jitter, time zone, country)
Candidate = tuple[Any, str, str | None, str | None]


def _candidates(
    conn: Connection, lead_ids: Sequence[uuid.UUID], sequence_name: str
) -> tuple[list[Candidate], int]:
    """The leads of ``lead_ids`` not live in the sequence yet, and how many are (skipped here, so
    that re-running an enrollment is a read, not a thousand refused inserts). On SQLite the ids
    travel as one JSON array and come back as the stored hex, without per-value processing."""
    is_live = (
        select(ENROLLMENTS.c.id)
        .where(
            ENROLLMENTS.c.lead_id == LEADS.c.id,
            ENROLLMENTS.c.sequence_name == sequence_name,
            # Constants written into the SQL, so that the partial index ``ux_enrollments_live`` applies.
            ENROLLMENTS.c.state.in_(
                bindparam("live", LIVE_ENROLLMENT_STATES, expanding=True, literal_execute=True)
            ),
        )
        .exists()
    )
    if conn.dialect.name == "sqlite":
        wanted: Any = select(
            func.json_each(json.dumps([lead.hex for lead in lead_ids])).table_valued("value")
        )
        lead_column: Any = type_coerce(LEADS.c.id, String)
        key: Callable[[Any], str] = _dashed
    else:
        wanted, lead_column, key = lead_ids, LEADS.c.id, str
    query = select(lead_column, LEADS.c.timezone, LEADS.c.country, is_live).where(LEADS.c.id.in_(wanted))
    rows = conn.execute(query).all()
    candidates = [(lead, key(lead), zone, country) for lead, zone, country, live in rows if not live]
    return candidates, len(rows) - len(candidates)


def _dashed(hex_id: str) -> str:
    """``str(uuid.UUID(hex=hex_id))``, the lead key the jitter is computed from, without the object."""
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def _already_live(conn: Connection, sequence_name: str, rows: list[dict[str, Any]]) -> int:
    """How many of ``rows`` were not inserted: their lead's live enrollment is another row."""
    ours = {row["id"] for row in rows}
    query = select(ENROLLMENTS.c.id).where(
        ENROLLMENTS.c.lead_id.in_([row["lead_id"] for row in rows]),
        ENROLLMENTS.c.sequence_name == sequence_name,
        ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES),
    )
    return sum(1 for enrollment_id in conn.execute(query).scalars() if enrollment_id not in ours)
