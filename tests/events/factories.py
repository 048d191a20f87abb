"""Rows for event, webhook and reconciliation tests: leads, enrollments, outbox messages, and a
sequences directory with the shipped library plus one transactional-only sequence."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, select

from models.suppressions import address_hash
from models.tables import Enrollment, Event, Lead, OutboxMessage, Suppression
from spirale.settings import PROJECT_ROOT

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[attr-defined]
# Monday 2026-12-07 10:00 Paris.
MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TRANSACTIONAL = "order-receipts"


def sequences_copy(target: Path) -> Path:
    """The shipped sequences directory, plus a sequence whose only step is transactional."""
    root = target / "sequences"
    shutil.copytree(PROJECT_ROOT / "sequences", root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (root / "library" / f"{TRANSACTIONAL}.yaml").write_text(
        f"name: {TRANSACTIONAL}\nsteps:\n"
        '  - id: receipt\n    channel: sms\n    text: "Votre commande est confirmée."\n'
        "    transactional: true\n",
        encoding="utf-8",
    )
    return root


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = MONDAY) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def add_lead(engine: Engine, **overrides: Any) -> uuid.UUID:
    lead_id = overrides.pop("id", uuid.uuid4())
    row: dict[str, Any] = {
        "id": lead_id,
        "email": f"lead-{lead_id.hex[:8]}@example.fr",
        "phone": "+33612345678",
        "first_name": "Camille",
        "country": "FR",
        "consent_email": True,
        "consent_sms": True,
        "status": "warm",
        "attributes": {},
        "created_at": MONDAY,
        "updated_at": MONDAY,
        **overrides,
    }
    with engine.begin() as conn:
        conn.execute(LEADS.insert().values(row))
    return lead_id  # type: ignore[no-any-return]


def add_enrollment(
    engine: Engine, lead_id: uuid.UUID, sequence: str = "whitepaper-nurture", **overrides: Any
) -> uuid.UUID:
    enrollment_id = uuid.uuid4()
    row = {
        "id": enrollment_id,
        "lead_id": lead_id,
        "sequence_name": sequence,
        "sequence_version": "test",
        "step_index": 1,
        "cycle": 0,
        "state": "active",
        "next_due_at": MONDAY,
        "enrolled_at": MONDAY.replace(hour=0),
        "updated_at": MONDAY,
        **overrides,
    }
    with engine.begin() as conn:
        conn.execute(ENROLLMENTS.insert().values(row))
    return enrollment_id


def add_outbox(engine: Engine, lead_id: uuid.UUID, enrollment_id: uuid.UUID, **overrides: Any) -> uuid.UUID:
    outbox_id = overrides.pop("id", uuid.uuid4())
    row = {
        "id": outbox_id,
        "enrollment_id": enrollment_id,
        "lead_id": lead_id,
        "sequence_name": "whitepaper-nurture",
        "step_id": "welcome",
        "cycle": 0,
        "attempt": 1,
        "channel": "email",
        "provider": "sendgrid",
        "to_address": "someone@example.fr",
        "state": "sent",
        "created_at": MONDAY,
        "updated_at": MONDAY,
        **overrides,
    }
    with engine.begin() as conn:
        conn.execute(OUTBOX.insert().values(row))
    return outbox_id  # type: ignore[no-any-return]


def outbox(engine: Engine, outbox_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(OUTBOX).where(OUTBOX.c.id == outbox_id)).one()


def enrollment(engine: Engine, enrollment_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(ENROLLMENTS).where(ENROLLMENTS.c.id == enrollment_id)).one()


def lead(engine: Engine, lead_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(LEADS).where(LEADS.c.id == lead_id)).one()


def suppressed(engine: Engine, channel: str, address: str) -> bool:
    with engine.connect() as conn:
        query = select(SUPPRESSIONS.c.id).where(
            SUPPRESSIONS.c.channel == channel, SUPPRESSIONS.c.address_hash == address_hash(channel, address)
        )
        return conn.execute(query).first() is not None


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(table.c.id)).all())


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a webhook or link may change, to prove that nothing changed."""
    with engine.connect() as conn:
        return {
            table.name: sorted((tuple(map(str, row)) for row in conn.execute(select(table))), key=str)
            for table in (LEADS, ENROLLMENTS, OUTBOX, EVENTS, SUPPRESSIONS)
        }
