"""Fixtures for reactivation and A/B tests: the shipped sequence library, recording channels, and
helpers that write leads, past sends and events straight into the real database."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table

from models.tables import Enrollment, Event, Lead, OutboxMessage
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.settings import PROJECT_ROOT, Settings
from tests.fakes.recording import RecordingChannel, recording_channels

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
SEQUENCES_DIR = PROJECT_ROOT / "sequences"
# Monday 2026-12-07, 09:00 in Paris: inside the reactivation email window.
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
_serial = itertools.count()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        sequences_dir=SEQUENCES_DIR,
        outbox_dir=tmp_path / "outbox",
        public_url="https://spirale.example",
        secret_key="test-secret",  # type: ignore[arg-type]
        dispatch_batch_size=2000,
    )


@pytest.fixture
def catalog() -> SequenceCatalog:
    return SequenceCatalog.open(SEQUENCES_DIR)


@pytest.fixture
def channels() -> dict[str, RecordingChannel]:
    return recording_channels()


@pytest.fixture
def dispatcher(
    engine: Engine, catalog: SequenceCatalog, channels: dict[str, RecordingChannel], settings: Settings
) -> Dispatcher:
    return Dispatcher(engine=engine, catalog=catalog, channels=channels, settings=settings)


def lead_row(*, now: datetime = T0, lead_id: uuid.UUID | None = None, **overrides: Any) -> dict[str, Any]:
    """A reachable, long-dormant cold prospect, unless ``overrides`` say otherwise."""
    index = next(_serial)
    row: dict[str, Any] = {
        "id": lead_id or uuid.uuid4(),
        "email": f"lead{index}@example.fr",
        "phone": f"+3361{index % 10**7:07d}",
        "first_name": f"Prénom{index}",
        "last_name": "Martin",
        "company": "Atelier",
        "job_title": "Gérante",
        "country": "FR",
        "timezone": "Europe/Paris",
        "consent_email": True,
        "consent_email_source": "test",
        "consent_email_at": now - timedelta(days=400),
        "consent_sms": True,
        "consent_sms_source": "test",
        "consent_sms_at": now - timedelta(days=400),
        "status": "cold",
        "customer_class": None,
        "owner": "alice",
        "source": "test",
        "attributes": {},
        "created_at": now - timedelta(days=400),
        "updated_at": now - timedelta(days=400),
        "last_engaged_at": now - timedelta(days=200),
        "last_contacted_at": None,
        "fit_score": 0.0,
        "engagement_score": 0.0,
        "engagement_at": None,
        "disqualified_reason": None,
        "last_purchase_at": None,
    }
    row.update(overrides)
    return row


MakeLeads = Callable[..., list[uuid.UUID]]


@pytest.fixture
def make_leads(engine: Engine) -> MakeLeads:
    def make(n: int = 1, *, ids: Iterable[uuid.UUID] | None = None, **overrides: Any) -> list[uuid.UUID]:
        given = list(ids) if ids is not None else [None] * n
        rows = [lead_row(lead_id=lead_id, **overrides) for lead_id in given]
        with engine.begin() as conn:
            conn.execute(LEADS.insert(), rows)
        return [row["id"] for row in rows]

    return make


def add_sends(
    engine: Engine, lead_id: uuid.UUID, times: Iterable[datetime], *, state: str = "sent"
) -> list[uuid.UUID]:
    """Past messages of another sequence to ``lead_id``, one per instant."""
    instants = list(times)
    enrollment = uuid.uuid4()
    start = min(instants, default=T0)
    rows = [
        {
            "id": uuid.uuid4(),
            "enrollment_id": enrollment,
            "lead_id": lead_id,
            "sequence_name": "incubator",
            "step_id": f"step-{index}",
            "channel": "email",
            "provider": "recording",
            "to_address": "someone@example.fr",
            "state": state,
            "created_at": at,
            "updated_at": at,
            "sent_at": at if state == "sent" else None,
        }
        for index, at in enumerate(instants)
    ]
    with engine.begin() as conn:
        conn.execute(
            ENROLLMENTS.insert().values(
                id=enrollment,
                lead_id=lead_id,
                sequence_name="incubator",
                sequence_version="v1",
                state="completed",
                enrolled_at=start,
                updated_at=start,
            )
        )
        if rows:
            conn.execute(OUTBOX.insert(), rows)
    return [row["id"] for row in rows]


def event_row(
    event_type: str, lead_id: uuid.UUID, at: datetime, *, outbox_id: uuid.UUID | None = None, **payload: Any
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "type": event_type,
        "lead_id": lead_id,
        "outbox_id": outbox_id,
        "provider": "test",
        "dedup_key": f"test:{uuid.uuid4()}",
        "occurred_at": at,
        "received_at": at,
        "processed_at": None,
        "payload": payload,
    }


def add_events(engine: Engine, rows: list[dict[str, Any]]) -> None:
    if rows:
        with engine.begin() as conn:
            conn.execute(EVENTS.insert(), rows)
