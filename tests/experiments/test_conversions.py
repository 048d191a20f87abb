"""Conversions: idempotent recording, and CSV imports that are all or nothing."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from scoring.conversions import ConversionError, import_conversions_csv, record_conversion
from tests.experiments.conftest import EVENTS, T0, MakeLeads

pytestmark = pytest.mark.db


def conversions(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        query = select(EVENTS).where(EVENTS.c.type == "converted").order_by(EVENTS.c.occurred_at)
        return [dict(row) for row in conn.execute(query).mappings()]


def test_recording_is_idempotent_on_source_and_external_id(engine: Engine, make_leads: MakeLeads) -> None:
    (lead,) = make_leads(email="camille@example.fr")
    with engine.begin() as conn:
        first = record_conversion(
            conn, email=" Camille@Example.fr", occurred_at=T0, value=120.0, source="shop", external_id="A-1"
        )
        again = record_conversion(
            conn, lead_id=lead, occurred_at=T0, value=120.0, source="shop", external_id="A-1"
        )
        other_shop = record_conversion(
            conn, lead_id=lead, occurred_at=T0, value=120.0, source="crm", external_id="A-1"
        )
    assert (first, again, other_shop) == (True, False, True)
    rows = conversions(engine)
    assert len(rows) == 2 and {row["lead_id"] for row in rows} == {lead}
    assert rows[0]["payload"] == {"value": 120.0, "source": "shop", "external_id": "A-1"}


def test_without_external_id_the_lead_instant_and_value_deduplicate(
    engine: Engine, make_leads: MakeLeads
) -> None:
    (lead,) = make_leads()
    with engine.begin() as conn:
        results = [
            record_conversion(conn, lead_id=lead, occurred_at=T0, value=50.0, source="api"),
            record_conversion(conn, lead_id=lead, occurred_at=T0, value=50.0, source="api"),
            record_conversion(
                conn, lead_id=lead, occurred_at=T0 + timedelta(days=1), value=50.0, source="api"
            ),
        ]
    assert results == [True, False, True]


def test_unknown_leads_and_bad_values_are_refused(engine: Engine, make_leads: MakeLeads) -> None:
    (lead,) = make_leads()
    with engine.begin() as conn:
        with pytest.raises(ConversionError, match=r"no lead with email nobody@example\.fr"):
            record_conversion(conn, email="nobody@example.fr", occurred_at=T0, source="api")
        with pytest.raises(ConversionError, match="no lead with id"):
            record_conversion(conn, lead_id=uuid.uuid4(), occurred_at=T0, source="api")
        with pytest.raises(ConversionError, match="needs a lead_id or an email"):
            record_conversion(conn, occurred_at=T0, source="api")
        with pytest.raises(ConversionError, match="positive amount"):
            record_conversion(conn, lead_id=lead, occurred_at=T0, value=-5.0, source="api")
    assert conversions(engine) == []


def test_csv_import_records_every_row_and_counts_repeats(engine: Engine, make_leads: MakeLeads) -> None:
    (camille,) = make_leads(email="camille@example.fr")
    (louis,) = make_leads(email="louis@example.fr")
    text = (
        "email;lead_id;occurred_at;value;external_id\n"
        "camille@example.fr;;2026-12-10T10:00:00+01:00;149,90;C-1\n"
        f";{louis};2026-12-11T09:00:00Z;;C-2\n"
        "CAMILLE@example.fr;;2026-12-10T10:00:00+01:00;149,90;C-1\n"
    )
    with engine.begin() as conn:
        result = import_conversions_csv(conn, io.StringIO(text), now=T0 + timedelta(days=5))
    assert (result.recorded, result.duplicates, result.errors) == (2, 1, [])
    rows = conversions(engine)
    assert [(row["lead_id"], row["payload"]["value"]) for row in rows] == [(camille, 149.9), (louis, None)]
    assert rows[0]["occurred_at"] == T0 + timedelta(days=3, hours=1)
    assert rows[0]["received_at"] == T0 + timedelta(days=5)
    assert rows[0]["provider"] == "csv"
    with engine.begin() as conn:
        repeat = import_conversions_csv(conn, io.StringIO(text), now=T0 + timedelta(days=6))
    assert (repeat.recorded, repeat.duplicates) == (0, 3)


def test_a_file_with_any_bad_row_imports_nothing(engine: Engine, make_leads: MakeLeads) -> None:
    make_leads(email="camille@example.fr")
    text = (
        "email,occurred_at,value,source\n"
        "camille@example.fr,2026-12-10T10:00:00Z,120,shop\n"
        "inconnu@example.fr,2026-12-10T10:00:00Z,80,shop\n"
        "camille@example.fr,yesterday,80,shop\n"
        "camille@example.fr,2026-12-10T11:00:00Z,beaucoup,shop\n"
        ",2026-12-10T11:00:00Z,1,shop\n"
        "pas-une-adresse,2026-12-10T11:00:00Z,1,shop\n"
    )
    with engine.begin() as conn:
        result = import_conversions_csv(conn, io.StringIO(text), now=T0)
    assert [str(error) for error in result.errors] == [
        "line 3: no lead with email inconnu@example.fr",
        "line 4: occurred_at 'yesterday' is not an ISO-8601 instant",
        "line 5: value 'beaucoup' is not an amount",
        "line 6: needs an email or a lead_id",
        "line 7: invalid email address 'pas-une-adresse': An email address must have an @-sign.",
    ]
    assert result.recorded == 0 and conversions(engine) == []


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "empty file"),
        ("email,when\n", "unknown column(s) when"),
        ("email,value\n", "the header needs occurred_at and one of email or lead_id"),
    ],
)
def test_a_bad_header_is_one_error_on_line_1(engine: Engine, header: str, message: str) -> None:
    with engine.begin() as conn:
        result = import_conversions_csv(conn, io.StringIO(header), now=T0)
    assert len(result.errors) == 1 and result.errors[0].line == 1 and message in result.errors[0].message
