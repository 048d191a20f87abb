"""The bulk writers store exactly what SQLAlchemy would, on SQLite (driver path) and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select

from models.bulk import insert_rows, sqlite_value, update_rows
from models.tables import Lead

pytestmark = pytest.mark.db
LEADS = Lead.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)


def row(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": uuid.uuid4(),
        "email": "bulk@example.fr",
        "phone": None,
        "first_name": "Zoé",
        "last_name": "",
        "company": "",
        "job_title": "",
        "country": "FR",
        "timezone": None,
        "consent_email": True,
        "consent_sms": False,
        "status": "warm",
        "attributes": {"size": 12, "tags": ["a"]},
        "created_at": NOW,
        "updated_at": NOW,
        "last_engaged_at": None,
    }
    return base | overrides


def test_inserted_rows_read_back_identically(engine: Engine) -> None:
    paris = timezone(timedelta(hours=1))
    rows = [row(), row(email="autre@example.fr", created_at=NOW.astimezone(paris), last_engaged_at=NOW)]
    with engine.begin() as conn:
        insert_rows(conn, LEADS, rows)
    with engine.connect() as conn:
        stored = {r["id"]: r for r in conn.execute(select(LEADS)).mappings()}
    for original in rows:
        got = stored[original["id"]]
        assert got["created_at"] == NOW and got["created_at"].tzinfo is not None
        assert got["attributes"] == {"size": 12, "tags": ["a"]}
        assert got["consent_email"] is True and got["consent_sms"] is False
        assert got["first_name"] == "Zoé"
    assert stored[rows[1]["id"]]["last_engaged_at"] == NOW


def test_insert_ignoring_duplicates_keeps_the_first_row(engine: Engine) -> None:
    first = row()
    with engine.begin() as conn:
        insert_rows(conn, LEADS, [first])
        insert_rows(conn, LEADS, [row(id=first["id"], first_name="Autre")], ignore_duplicates=True)
    with engine.connect() as conn:
        names = conn.execute(select(LEADS.c.first_name)).scalars().all()
    assert names == ["Zoé"]


def test_update_rows_matches_keys_and_counts_changes(engine: Engine) -> None:
    rows = [row(email=f"u{i}@example.fr") for i in range(3)]
    with engine.begin() as conn:
        insert_rows(conn, LEADS, rows)
        later = NOW + timedelta(days=1)
        changed = update_rows(
            conn,
            LEADS,
            [{"id": r["id"], "status": "hot", "expected": "warm"} for r in rows[:2]]
            + [{"id": rows[2]["id"], "status": "hot", "expected": "cold"}],
            set_columns=["status"],
            where={"id": "id", "status": "expected"},
            constants={"updated_at": later},
        )
    assert changed == 2
    with engine.connect() as conn:
        stored = {r.id: (r.status, r.updated_at) for r in conn.execute(select(LEADS))}
    assert stored[rows[0]["id"]] == ("hot", NOW + timedelta(days=1))
    assert stored[rows[2]["id"]] == ("warm", NOW)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        sqlite_value(datetime(2026, 1, 1))
