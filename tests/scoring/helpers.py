"""Shared helpers for the scoring and intake tests: real settings on the shipped sequences
directory, a local outbox in a temporary directory, and small row builders."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, select

from models.tables import Enrollment, Event, FormSubmission, Lead, SalesTask, ScoreEntry
from spirale.settings import PROJECT_ROOT, Settings

SEQUENCES_DIR = PROJECT_ROOT / "sequences"
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
LEDGER: Table = ScoreEntry.__table__  # type: ignore[attr-defined]
SUBMISSIONS: Table = FormSubmission.__table__  # type: ignore[attr-defined]
# Monday 2026-12-07, 10:00 in Paris: inside the legal calling hours.
MONDAY_10H = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def make_settings(tmp_path: Path) -> Settings:
    """Settings on the shipped sequences, sending into a local outbox under ``tmp_path``."""
    return Settings(
        sequences_dir=SEQUENCES_DIR,
        outbox_dir=tmp_path / "outbox",
        email_channel="local-outbox",
        sms_channel="local-outbox",
        public_url="https://spirale.example",
        secret_key="test-secret",
        sender_name="Spirale",
    )


def submission(
    form_id: str,
    email: str,
    *,
    received_at: datetime = MONDAY_10H,
    **payload: Any,
) -> dict[str, Any]:
    """A ``form_submissions`` row as the web endpoint stores it."""
    return {
        "id": uuid.uuid4(),
        "form_id": form_id,
        "submission_key": uuid.uuid4().hex,
        "email": email,
        "lead_id": uuid.uuid4(),
        "status": "received",
        "error": None,
        "payload": payload,
        "received_at": received_at,
        "processed_at": None,
    }


def store_submissions(engine: Engine, *rows: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(SUBMISSIONS.insert(), list(rows))


def lead_by_email(conn: Connection, email: str) -> dict[str, Any]:
    return dict(conn.execute(select(LEADS).where(LEADS.c.email == email)).one()._mapping)


def live_sequences(conn: Connection, lead_id: uuid.UUID) -> list[str]:
    query = select(ENROLLMENTS.c.sequence_name).where(
        ENROLLMENTS.c.lead_id == lead_id, ENROLLMENTS.c.state.in_(("active", "paused"))
    )
    return sorted(conn.execute(query).scalars())


def outbox_emails(settings: Settings) -> list[str]:
    """The raw text of every email the local outbox wrote."""
    folder = settings.outbox_dir / "email"
    return (
        [path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.eml"))] if folder.exists() else []
    )


def outbox_sms(settings: Settings) -> list[dict[str, Any]]:
    path = settings.outbox_dir / "sms.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def event_row(lead_id: uuid.UUID, event_type: str, at: datetime, **payload: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "type": event_type,
        "lead_id": lead_id,
        "outbox_id": None,
        "provider": "test",
        "dedup_key": uuid.uuid4().hex,
        "occurred_at": at,
        "received_at": at,
        "processed_at": None,
        "payload": payload,
    }
