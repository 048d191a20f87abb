"""Bulk enrollment writes what the planner says, in the database's own format, on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from models.tables import Enrollment
from sequences.planner import next_due
from sequences.schema import Sequence
from spirale.enrollment import CHUNK, enroll_leads
from tests.dispatch.conftest import MONDAY_9H, MakeLeads

pytestmark = pytest.mark.db

ENROLLMENTS = Enrollment.__table__  # type: ignore[attr-defined]

JITTERED = Sequence.model_validate(
    {
        "name": "jittered",
        "jitter": "3h",
        "steps": [
            {"id": "hello", "channel": "email", "template": "hello", "subject": "Bonjour", "wait": "2h"},
            {"id": "nudge", "channel": "sms", "text": "Bonjour"},
        ],
    }
)
# Saturday evening in Paris: the first step (2 h later, plus up to 3 h of jitter) lands outside
# the email window for everyone, and each lead's jitter decides where.
SATURDAY_EVENING = datetime(2026, 12, 12, 18, 30, tzinfo=UTC)


def test_each_lead_gets_its_own_first_due_time_and_the_row_reads_back_whole(
    engine: Engine, make_leads: MakeLeads
) -> None:
    paris = make_leads(30)
    new_york = make_leads(30, timezone="America/New_York", country="US")
    with engine.begin() as conn:
        result = enroll_leads(
            conn, lead_ids=paris + new_york, sequence=JITTERED, version="v7", now=SATURDAY_EVENING
        )
    assert (result.enrolled, result.already) == (60, 0)

    with engine.connect() as conn:
        rows = {row.lead_id: row for row in conn.execute(select(ENROLLMENTS)).all()}
    assert set(rows) == set(paris + new_york)
    zones = {lead: ("Europe/Paris", "FR") for lead in paris} | {
        lead: ("America/New_York", "US") for lead in new_york
    }
    for lead, (zone, country) in zones.items():
        row = rows[lead]
        expected = next_due(
            JITTERED, 0, SATURDAY_EVENING, tz=ZoneInfo(zone), country=country, lead_key=str(lead)
        ).at
        assert row.next_due_at == expected, (lead, zone)
        assert row.next_due_at.tzinfo is not None
        assert (row.sequence_name, row.sequence_version, row.step_index, row.cycle, row.state) == (
            "jittered",
            "v7",
            0,
            0,
            "active",
        )
        assert row.enrolled_at == row.updated_at == SATURDAY_EVENING
        assert (row.claimed_by, row.lease_until, row.last_step_at, row.exit_reason) == (None,) * 4
        assert row.id.version == 7
    # The jitter is per lead: the Paris leads do not all share one due time.
    assert len({rows[lead].next_due_at for lead in paris}) > 5


def test_enrollment_spanning_several_chunks_with_unknown_and_repeated_ids(
    engine: Engine, make_leads: MakeLeads
) -> None:
    leads = make_leads(CHUNK + 7)
    unknown = [uuid.uuid4() for _ in range(3)]
    with engine.begin() as conn:
        result = enroll_leads(
            conn,
            lead_ids=leads + unknown + leads[:10],
            sequence=JITTERED,
            version="v1",
            now=MONDAY_9H - timedelta(days=1),
        )
    assert (result.enrolled, result.already) == (CHUNK + 7, 0)
    with engine.connect() as conn:
        enrolled = conn.execute(select(ENROLLMENTS.c.lead_id)).scalars().all()
    assert sorted(enrolled) == sorted(leads)
