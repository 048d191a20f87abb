"""Leads: address normalization, upsert and consent proof, bulk import, the template view."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from models.db import session_scope
from models.leads import (
    LEADS,
    bulk_insert_leads,
    get_lead_by_email,
    lead_context,
    normalize_email,
    normalize_phone,
    upsert_lead,
)
from models.tables import Lead, LeadBase, LeadStatus

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=3)
HOT = {"status": "hot"}
SMS_AT = {"consent_sms_at": NOW}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jean.dupont@example.fr", "jean.dupont@example.fr"),
        ("  Jean.Dupont@EXAMPLE.fr ", "jean.dupont@example.fr"),
        ("Élodie.Bérard@Exemple.FR", "élodie.bérard@exemple.fr"),
        ("contact+livre-blanc@pme.example.com", "contact+livre-blanc@pme.example.com"),
    ],
)
def test_normalize_email(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "invalid email address ''"),
        ("jean.dupont", "invalid email address 'jean.dupont': An email address must have an @-sign."),
        ("jean@dupont", "invalid email address 'jean@dupont': The part after the @-sign is not valid"),
        ("jean..dupont@example.fr", "invalid email address 'jean..dupont@example.fr'"),
        ("jean dupont@example.fr", "invalid email address 'jean dupont@example.fr'"),
    ],
)
def test_normalize_email_rejects_with_a_clear_message(raw: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalize_email(raw)
    assert str(caught.value).startswith(problem)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("06.12.34.56.78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "FR", "+33612345678"),
        ("0033612345678", "FR", "+33612345678"),
        ("+33612345678", "US", "+33612345678"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("0470 12 34 56", "BE", "+32470123456"),
    ],
)
def test_normalize_phone(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, default_region=region) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "invalid phone number '': The string supplied did not seem to be a phone number."),
        ("abc", "invalid phone number 'abc': The string supplied did not seem to be a phone number."),
        ("06 12", "invalid phone number '06 12': not a valid number for its region"),
        ("+33 1", "invalid phone number '+33 1': The string supplied is too short to be a phone number."),
    ],
)
def test_normalize_phone_rejects_with_a_clear_message(raw: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalize_phone(raw)
    assert str(caught.value).startswith(problem)


def upsert(engine: Engine, data: Any, now: datetime = NOW) -> Lead:
    with session_scope(engine) as session:
        return upsert_lead(session, data=data, now=now)


def stored_leads(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(LEADS)))


@pytest.mark.db
def test_upsert_creates_a_normalized_lead(engine: Engine) -> None:
    lead = upsert(engine, {"email": " Anne@Example.FR", "phone": "06 12 34 56 78", "first_name": "Anne"})
    [row] = stored_leads(engine)
    assert (row.id, row.email, row.phone) == (lead.id, "anne@example.fr", "+33612345678")
    assert row.first_name == "Anne"
    assert (row.status, row.country, row.created_at, row.updated_at) == ("cold", "FR", NOW, NOW)
    assert (row.consent_email, row.consent_email_source, row.consent_email_at) == (False, None, None)


@pytest.mark.db
def test_upsert_dedupes_by_email_and_only_overwrites_with_values(engine: Engine) -> None:
    first = upsert(engine, {"email": "anne@example.fr", "first_name": "Anne", "company": "Atelier"})
    second = upsert(
        engine,
        {"email": "ANNE@example.fr", "first_name": "", "company": None, "job_title": "Gérante", **HOT},
        LATER,
    )
    [row] = stored_leads(engine)
    assert second.id == first.id == row.id
    assert (row.first_name, row.company, row.job_title, row.status) == ("Anne", "Atelier", "Gérante", "hot")
    assert (row.created_at, row.updated_at) == (NOW, LATER)


@pytest.mark.db
def test_upsert_without_email_matches_on_the_phone(engine: Engine) -> None:
    first = upsert(engine, {"phone": "06 12 34 56 78", "first_name": "Paul"})
    second = upsert(engine, {"phone": "+33612345678", "last_name": "Durand"})
    assert first.id == second.id
    [row] = stored_leads(engine)
    assert (row.first_name, row.last_name, row.email) == ("Paul", "Durand", None)


@pytest.mark.db
def test_consent_keeps_its_first_proof_and_is_never_withdrawn_here(engine: Engine) -> None:
    upsert(engine, {"email": "anne@example.fr", "consent_email": True, "source": "livre-blanc"})
    again = {"consent_email": True, "consent_email_source": "webinar"}
    upsert(engine, {"email": "anne@example.fr", **again}, LATER)
    upsert(engine, {"email": "anne@example.fr", "consent_email": False, "consent_sms": False}, LATER)
    upsert(
        engine,
        {"email": "anne@example.fr", "consent_sms": True, "consent_sms_source": "salon", **SMS_AT},
        LATER,
    )
    [row] = stored_leads(engine)
    assert (row.consent_email, row.consent_email_source, row.consent_email_at) == (True, "livre-blanc", NOW)
    assert (row.consent_sms, row.consent_sms_source, row.consent_sms_at) == (True, "salon", NOW)


@pytest.mark.db
def test_upsert_merges_attributes(engine: Engine) -> None:
    upsert(engine, {"email": "anne@example.fr", "attributes": {"employees": 12, "sector": "btp"}})
    upsert(engine, {"email": "anne@example.fr", "attributes": {"sector": "industrie", "webinar": True}})
    [row] = stored_leads(engine)
    assert row.attributes == {"employees": 12, "sector": "industrie", "webinar": True}


@pytest.mark.db
def test_upsert_takes_a_pydantic_model_without_applying_its_defaults(engine: Engine) -> None:
    upsert(engine, {"email": "anne@example.fr", "status": "hot", "country": "BE"})
    upsert(engine, LeadBase(email="anne@example.fr", company="Atelier"))
    [row] = stored_leads(engine)
    assert (row.status, row.country, row.company) == ("hot", "BE", "Atelier")


@pytest.mark.db
@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"email": "anne@example.fr", "favourite_colour": "blue"}, "unknown lead fields: favourite_colour"),
        ({"first_name": "Anne"}, "a lead needs an email address or a phone number"),
        ({"email": "anne@"}, "invalid email address 'anne@'"),
        ({"email": "anne@example.fr", "status": "tepid"}, "'tepid' is not a valid LeadStatus"),
    ],
)
def test_upsert_refuses_bad_data(engine: Engine, data: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        upsert(engine, data)
    assert stored_leads(engine) == []


@pytest.mark.db
def test_concurrent_upserts_of_one_email_make_one_lead(engine: Engine) -> None:
    """The second writer either waits (SQLite's write lock) or hits the unique index (PostgreSQL)
    and then updates the lead the first one created."""
    first_flushed, results, errors = threading.Event(), [], []

    def second_writer() -> None:
        try:
            first_flushed.wait(timeout=10)
            results.append(upsert(engine, {"email": "race@example.fr", "company": "Second"}, LATER).id)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second_writer)
    thread.start()
    with session_scope(engine) as session:
        first = upsert_lead(session, data={"email": "race@example.fr", "first_name": "First"}, now=NOW)
        session.flush()
        first_flushed.set()
        thread.join(timeout=0.5)  # let the second writer block on us
    thread.join(timeout=30)
    assert errors == []
    [row] = stored_leads(engine)
    assert results == [first.id] and (row.first_name, row.company) == ("First", "Second")


@pytest.mark.db
def test_get_lead_by_email_compares_normalized(engine: Engine) -> None:
    lead = upsert(engine, {"email": "anne@example.fr"})
    with Session(engine) as session:
        found = get_lead_by_email(session, "  ANNE@Example.fr")
        assert found is not None and found.id == lead.id
        assert get_lead_by_email(session, "nobody@example.fr") is None
        with pytest.raises(ValueError, match="invalid email address"):
            get_lead_by_email(session, "not an email")


@pytest.mark.db
def test_bulk_insert_fills_defaults_and_skips_existing_emails(engine: Engine) -> None:
    upsert(engine, {"email": "old@example.fr", "first_name": "Old"})
    phones = [f"06 12 34 {i // 100:02d} {i % 100:02d}" for i in range(1_200)]
    rows = [{"email": f"Lead{i}@Example.fr", "phone": phone} for i, phone in enumerate(phones)]
    rows += [{"email": "OLD@example.fr", "first_name": "Overwritten?"}, {"email": "lead7@example.fr"}]
    with engine.begin() as conn:
        assert bulk_insert_leads(conn, rows, now=LATER) == 1_200
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LEADS)).scalar_one() == 1_201
        old = conn.execute(select(LEADS).where(LEADS.c.email == "old@example.fr")).one()
        lead = conn.execute(select(LEADS).where(LEADS.c.email == "lead7@example.fr")).one()
    assert old.first_name == "Old"
    assert (lead.phone, lead.status, lead.country, lead.attributes) == ("+33612340007", "cold", "FR", {})
    assert (lead.created_at, lead.updated_at, lead.consent_email) == (LATER, LATER, False)
    assert isinstance(lead.id, uuid.UUID)


@pytest.mark.db
def test_bulk_insert_without_normalizing_takes_rows_as_given(engine: Engine) -> None:
    rows = [{"email": "as-given@example.fr", "phone": "+33612345678", "status": "warm", "first_name": "Zoé"}]
    with engine.begin() as conn:
        assert bulk_insert_leads(conn, rows, now=NOW, normalize=False) == 1
    [row] = stored_leads(engine)
    assert (row.email, row.phone) == ("as-given@example.fr", "+33612345678")
    assert (row.status, row.first_name) == ("warm", "Zoé")


@pytest.mark.db
@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"email": "a@example.fr", "colour": "red"}, "unknown lead columns: colour"),
        ({"email": "a@"}, "invalid email"),
    ],
)
def test_bulk_insert_refuses_bad_rows(engine: Engine, row: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem), engine.begin() as conn:
        bulk_insert_leads(conn, [row], now=NOW)


FULL = {
    "first_name": "Anne",
    "last_name": "Martin",
    "email": "anne@example.fr",
    "phone": "+33612345678",
    "company": "Atelier",
    "job_title": "Gérante",
    "country": "FR",
    "timezone": "Europe/Paris",
    "status": "warm",
    "owner": "alice",
    "consent": {"email": True, "sms": False},
}


@pytest.mark.db
def test_lead_context_is_the_same_plain_dict_from_a_model_a_row_or_a_mapping(engine: Engine) -> None:
    data = {key: value for key, value in FULL.items() if key != "consent"}
    lead = upsert(engine, {**data, "consent_email": True, "source": "form"})
    [row] = stored_leads(engine)
    assert lead_context(lead) == FULL
    assert lead_context(row) == FULL
    assert lead_context(row._mapping) == FULL
    assert type(lead_context(lead)["status"]) is str


def test_lead_context_of_a_bare_lead_has_no_none_where_templates_print_text() -> None:
    bare = Lead(email="bare@example.fr", status=LeadStatus.COLD, created_at=NOW, updated_at=NOW)
    context = lead_context(bare)
    assert context["first_name"] == context["company"] == "" and context["status"] == "cold"
    assert context["consent"] == {"email": False, "sms": False}
