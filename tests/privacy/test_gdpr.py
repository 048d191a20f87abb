"""GDPR export and erasure on a real database (SQLite, and PostgreSQL in the second pass)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from models.db import session_scope
from models.leads import upsert_lead
from models.suppressions import address_hash, is_suppressed, suppress
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.enrollment import enroll_leads
from spirale.privacy import ERASURE_REASON, erase_lead, export_lead
from tests.fakes.recording import RecordingChannel
from tests.privacy.conftest import (
    ASSIGNMENTS,
    CAMILLE,
    CAMILLE_PHONE,
    ENROLLMENTS,
    EVENTS,
    FORMS,
    LEADS,
    LEDGER,
    OTHER,
    OUTBOX,
    SUPPRESSIONS,
    T0,
    TASKS,
    History,
    add_event,
    count_rows,
)

pytestmark = pytest.mark.db
TIED = ("enrollments", "variant_assignments", "outbox", "events", "score_ledger", "sales_tasks")


def test_export_holds_every_record_of_the_person_and_nobody_else(engine: Engine, history: History) -> None:
    with engine.connect() as conn:
        suppress(conn, channel="sms", address=CAMILLE_PHONE, reason="sms_stop", source="twilio", now=T0)
        conn.commit()
        data = export_lead(conn, email="  Camille.Martin@Example.FR ")

    assert json.loads(json.dumps(data)) == data  # JSON-serializable as it is
    assert data["lead"]["email"] == CAMILLE
    assert data["lead"]["id"] == str(history.camille)
    assert data["consents"]["email"] == {"given": True, "source": "form:livre-blanc", "at": T0.isoformat()}
    for table in (*TIED, "form_submissions"):
        assert data[table], f"{table} is missing from the export"
        for row in data[table]:
            assert row.get("lead_id") in (str(history.camille), None)
    assert {row["step_id"] for row in data["outbox"]} >= {"hello", "ping", "bye"}
    assert {row["to_address"] for row in data["outbox"]} == {CAMILLE, CAMILLE_PHONE}
    assert {e["type"] for e in data["events"]} == {"click", "sms_reply"}  # the unlinked SMS names her number
    assert data["variant_assignments"][0]["sequence_name"] == "ab"
    assert data["sales_tasks"][0]["note"] == f"Rappeler {CAMILLE}"
    assert [(s["channel"], s["reason"]) for s in data["suppressions"]] == [("sms", "sms_stop")]
    assert OTHER not in json.dumps(data)


def test_export_of_an_unknown_address_is_empty_but_lists_its_suppressions(engine: Engine) -> None:
    with engine.begin() as conn:
        suppress(conn, channel="email", address="gone@example.fr", reason="unsubscribe", source="x", now=T0)
    with engine.connect() as conn:
        data = export_lead(conn, email="gone@example.fr")
    assert data["lead"] is None
    assert data["consents"] == {}
    assert all(data[table] == [] for table in TIED)
    assert [s["reason"] for s in data["suppressions"]] == ["unsubscribe"]


def test_export_rejects_what_is_not_an_email(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(ValueError, match="invalid email address"):
        export_lead(conn, email="not an address")


def test_erase_removes_every_row_of_the_person_and_keeps_only_hashes(
    engine: Engine, history: History
) -> None:
    before_other = {
        table.name: count_rows(engine, table, table.c.lead_id == history.other)
        for table in (ENROLLMENTS, ASSIGNMENTS, OUTBOX, EVENTS, LEDGER, TASKS, FORMS)
    }
    with engine.begin() as conn:
        suppress(conn, channel="email", address=CAMILLE, reason="unsubscribe", source="link", now=T0)
        report = erase_lead(conn, email=CAMILLE.upper(), now=T0 + timedelta(days=3))

    assert report.lead_found
    assert set(report.deleted) >= {"leads", *TIED, "form_submissions"}
    assert report.deleted["leads"] == 1
    assert report.suppressed_channels == ("email", "sms")
    assert count_rows(engine, LEADS, LEADS.c.id == history.camille) == 0
    for table in (ENROLLMENTS, ASSIGNMENTS, OUTBOX, EVENTS, LEDGER, TASKS, FORMS):
        assert count_rows(engine, table, table.c.lead_id == history.camille) == 0, table.name
    assert count_rows(engine, EVENTS, EVENTS.c.lead_id.is_(None)) == 0
    with engine.connect() as conn:
        kept = conn.execute(select(SUPPRESSIONS)).mappings().all()
    assert sorted((s["channel"], s["address_hash"], s["address"]) for s in kept) == sorted(
        [("email", address_hash("email", CAMILLE), None), ("sms", address_hash("sms", CAMILLE_PHONE), None)]
    )
    # The first reason is kept (the person had unsubscribed before asking for erasure).
    assert {s["channel"]: s["reason"] for s in kept} == {"email": "unsubscribe", "sms": ERASURE_REASON}
    after_other = {
        table.name: count_rows(engine, table, table.c.lead_id == history.other)
        for table in (ENROLLMENTS, ASSIGNMENTS, OUTBOX, EVENTS, LEDGER, TASKS, FORMS)
    }
    assert after_other == before_other
    assert all(after_other.values())


def test_erasing_an_address_with_no_lead_still_blocks_it(engine: Engine) -> None:
    with engine.begin() as conn:
        report = erase_lead(conn, email="nobody@example.fr", now=T0)
        assert is_suppressed(conn, channel="email", address="nobody@example.fr")
    assert not report.lead_found
    assert report.rows_deleted == 0
    assert report.suppressed_channels == ("email",)


def test_a_reimported_address_stays_blocked_at_send_time(
    engine: Engine,
    history: History,
    catalog: SequenceCatalog,
    dispatcher: Dispatcher,
    channels: dict[str, RecordingChannel],
) -> None:
    later = T0 + timedelta(days=14)
    with engine.begin() as conn:
        erase_lead(conn, email=CAMILLE, now=later)
    for channel in channels.values():
        channel.sent.clear()
    with session_scope(engine) as session:
        lead = upsert_lead(
            session,
            data={"email": CAMILLE, "phone": CAMILLE_PHONE, "consent_email": True, "consent_sms": True},
            now=later,
        )
        reimported = lead.id
    assert reimported != history.camille
    with engine.begin() as conn:
        result = enroll_leads(
            conn,
            lead_ids=[reimported],
            sequence=catalog.get("drip"),
            version=catalog.version("drip"),
            now=later,
        )
    assert result.enrolled == 1
    for hours in range(0, 24 * 5, 6):
        dispatcher.dispatch_due(now=later + timedelta(hours=hours))

    assert [m.to for m in channels["email"].sent + channels["sms"].sent] == []
    with engine.connect() as conn:
        states = conn.execute(select(OUTBOX.c.step_id, OUTBOX.c.state).where(OUTBOX.c.lead_id == reimported))
        assert sorted(states) == [("bye", "suppressed"), ("hello", "suppressed"), ("ping", "suppressed")]


def test_erase_leaves_unlinked_events_of_other_addresses_alone(engine: Engine, history: History) -> None:
    lookalike = add_event(engine, None, "bounce", payload={"email": "x" + CAMILLE})
    mention = add_event(engine, None, "bounce", payload={"email": CAMILLE.upper()})
    with engine.begin() as conn:
        erase_lead(conn, email=CAMILLE, now=T0)
    assert count_rows(engine, EVENTS, EVENTS.c.id == lookalike) == 1
    assert count_rows(engine, EVENTS, EVENTS.c.id == mention) == 0
