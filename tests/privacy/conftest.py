"""Fixtures for the privacy tests: a lead with a full history written by the real dispatcher, a
bystander lead that must come through untouched, and helpers to add events and old prospects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, func, select

from models.tables import (
    Enrollment,
    Event,
    FormSubmission,
    Lead,
    OutboxMessage,
    SalesTask,
    ScoreEntry,
    Suppression,
    VariantAssignment,
)
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.enrollment import enroll_leads
from spirale.settings import Settings, get_settings
from tests.fakes.recording import RecordingChannel, recording_channels

FIXTURES = Path(__file__).resolve().parent.parent / "dispatch" / "fixtures"
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
LEDGER: Table = ScoreEntry.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
FORMS: Table = FormSubmission.__table__  # type: ignore[attr-defined]
SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[attr-defined]
ASSIGNMENTS: Table = VariantAssignment.__table__  # type: ignore[attr-defined]
# Monday 2026-12-07, 09:00 in Paris.
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
CAMILLE = "camille.martin@example.fr"
CAMILLE_PHONE = "+33612345678"
OTHER = "paul.durand@example.fr"
OTHER_PHONE = "+33698765432"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        sequences_dir=FIXTURES,
        outbox_dir=tmp_path / "outbox",
        public_url="https://spirale.example",
        secret_key="test-secret",  # type: ignore[arg-type]
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


def lead_row(email: str | None, phone: str | None, *, now: datetime = T0, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "email": email,
        "phone": phone,
        "first_name": "Camille",
        "last_name": "Martin",
        "company": "Atelier Martin",
        "job_title": "Gérante",
        "country": "FR",
        "timezone": "Europe/Paris",
        "consent_email": True,
        "consent_email_source": "form:livre-blanc",
        "consent_email_at": now,
        "consent_sms": True,
        "consent_sms_source": "form:livre-blanc",
        "consent_sms_at": now,
        "status": "warm",
        "owner": "alice",
        "source": "form:livre-blanc",
        "attributes": {"postcode": "75011"},
        "created_at": now,
        "updated_at": now,
    }
    row.update(overrides)
    return row


def insert_lead(engine: Engine, email: str | None, phone: str | None, **overrides: Any) -> uuid.UUID:
    row = lead_row(email, phone, **overrides)
    with engine.begin() as conn:
        conn.execute(LEADS.insert(), [row])
    return uuid.UUID(str(row["id"]))


def add_event(
    engine: Engine,
    lead_id: uuid.UUID | None,
    kind: str,
    *,
    at: datetime = T0,
    outbox_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> uuid.UUID:
    event_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            EVENTS.insert(),
            [
                {
                    "id": event_id,
                    "type": kind,
                    "lead_id": lead_id,
                    "outbox_id": outbox_id,
                    "provider": "test",
                    "dedup_key": f"test:{event_id}",
                    "occurred_at": at,
                    "received_at": at,
                    "processed_at": at,
                    "payload": payload or {},
                }
            ],
        )
    return event_id


@dataclass(frozen=True)
class History:
    """The two leads of a populated database."""

    camille: uuid.UUID
    other: uuid.UUID


def _history_of(engine: Engine, lead_id: uuid.UUID, email: str, now: datetime) -> None:
    with engine.begin() as conn:
        outbox_id = conn.execute(select(OUTBOX.c.id).where(OUTBOX.c.lead_id == lead_id).limit(1)).scalar_one()
    click = add_event(engine, lead_id, "click", at=now, outbox_id=outbox_id, payload={"email": email})
    with engine.begin() as conn:
        conn.execute(
            LEDGER.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "lead_id": lead_id,
                    "kind": "engagement",
                    "rule": "engagement.click",
                    "points": 5.0,
                    "event_id": click,
                    "detail": "",
                    "created_at": now,
                }
            ],
        )
        conn.execute(
            TASKS.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "lead_id": lead_id,
                    "kind": "call",
                    "owner": "alice",
                    "note": f"Rappeler {email}",
                    "state": "open",
                    "due_at": now,
                    "created_at": now,
                    "cycle": 0,
                }
            ],
        )
        conn.execute(
            FORMS.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "form_id": "livre-blanc",
                    "submission_key": f"key-{uuid.uuid4()}",
                    "email": email,
                    "lead_id": lead_id,
                    "status": "processed",
                    "payload": {"email": email},
                    "received_at": now,
                    "processed_at": now,
                }
            ],
        )


@pytest.fixture
def history(engine: Engine, catalog: SequenceCatalog, dispatcher: Dispatcher) -> History:
    """Camille and Paul, each with sends from the ``ab`` and ``drip`` sequences, a click and its
    ledger line, an open call task and a form submission; plus an inbound SMS from Camille's
    number that matched no lead."""
    camille = insert_lead(engine, CAMILLE, CAMILLE_PHONE)
    other = insert_lead(engine, OTHER, OTHER_PHONE, first_name="Paul", last_name="Durand")
    for name in ("drip", "ab"):
        with engine.begin() as conn:
            enroll_leads(
                conn,
                lead_ids=[camille, other],
                sequence=catalog.get(name),
                version=catalog.version(name),
                now=T0,
            )
    for hours in range(0, 24 * 5, 6):
        dispatcher.dispatch_due(now=T0 + timedelta(hours=hours))
    _history_of(engine, camille, CAMILLE, T0 + timedelta(days=1))
    _history_of(engine, other, OTHER, T0 + timedelta(days=1))
    add_event(engine, None, "sms_reply", payload={"From": CAMILLE_PHONE, "Body": "Rappelez-moi"})
    return History(camille=camille, other=other)


def count_rows(engine: Engine, table: Table, *conditions: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one())


@pytest.fixture
def cli_env(
    database_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Environment for the command line, pointing at this test's database and sequences."""
    env = {
        "SPIRALE_DATABASE_URL": database_url,
        "SPIRALE_SEQUENCES_DIR": str(settings.sequences_dir),
        "SPIRALE_OUTBOX_DIR": str(settings.outbox_dir),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()
