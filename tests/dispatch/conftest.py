"""Fixtures for the dispatch engine: a small sequence library, recording channels, leads."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from models.tables import Lead
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.enrollment import enroll_leads
from spirale.settings import Settings
from tests.fakes.recording import RecordingChannel, recording_channels

FIXTURES = Path(__file__).parent / "fixtures"
LEADS = Lead.__table__  # type: ignore[attr-defined]
# Monday 2026-12-07 09:00 Paris.
MONDAY_9H = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        sequences_dir=FIXTURES,
        outbox_dir=tmp_path / "outbox",
        public_url="https://spirale.example",
        secret_key="test-secret",  # type: ignore[arg-type]
        dispatch_batch_size=200,
    )


@pytest.fixture
def catalog() -> SequenceCatalog:
    return SequenceCatalog.open(FIXTURES)


@pytest.fixture
def channels() -> dict[str, RecordingChannel]:
    return recording_channels()


@pytest.fixture
def dispatcher(
    engine: Engine, catalog: SequenceCatalog, channels: dict[str, RecordingChannel], settings: Settings
) -> Dispatcher:
    return Dispatcher(engine=engine, catalog=catalog, channels=channels, settings=settings)


def lead_row(index: int, now: datetime, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "email": f"lead{index}@example.fr",
        "phone": f"+3361{index:07d}",
        "first_name": f"Prénom{index}",
        "last_name": "Martin",
        "company": "Atelier",
        "job_title": "Gérante",
        "country": "FR",
        "timezone": "Europe/Paris",
        "consent_email": True,
        "consent_email_source": "test",
        "consent_email_at": now,
        "consent_sms": True,
        "consent_sms_source": "test",
        "consent_sms_at": now,
        "status": "warm",
        "customer_class": None,
        "owner": "alice",
        "source": "test",
        "attributes": {},
        "created_at": now,
        "updated_at": now,
        "last_engaged_at": None,
        "last_contacted_at": None,
    }
    row.update(overrides)
    return row


MakeLeads = Callable[..., list[uuid.UUID]]


@pytest.fixture
def make_leads(engine: Engine) -> MakeLeads:
    counter = iter(range(10**9))

    def make(n: int, *, now: datetime = MONDAY_9H, **overrides: Any) -> list[uuid.UUID]:
        rows = [lead_row(next(counter), now, **overrides) for _ in range(n)]
        with engine.begin() as conn:
            conn.execute(LEADS.insert(), rows)
        return [row["id"] for row in rows]

    return make


Enroll = Callable[..., int]


@pytest.fixture
def enroll(engine: Engine, catalog: SequenceCatalog) -> Enroll:
    def run(lead_ids: list[uuid.UUID], sequence: str, *, now: datetime = MONDAY_9H) -> int:
        with engine.begin() as conn:
            result = enroll_leads(
                conn,
                lead_ids=lead_ids,
                sequence=catalog.get(sequence),
                version=catalog.version(sequence),
                now=now,
            )
        return result.enrolled

    return run
