"""The CNIL retention purge: prospects with no contact of their own for 3 years go, others stay."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from models.suppressions import address_hash, suppress
from spirale.privacy import purge_inactive
from tests.privacy.conftest import EVENTS, FORMS, LEADS, SUPPRESSIONS, T0, add_event, count_rows, insert_lead

pytestmark = pytest.mark.db
YEAR = timedelta(days=365)
LONG_AGO = T0 - 4 * YEAR


def prospect(engine: Engine, name: str, **overrides: object) -> uuid.UUID:
    fields = {"created_at": LONG_AGO, "updated_at": LONG_AGO, "last_engaged_at": LONG_AGO, "status": "cold"}
    return insert_lead(engine, f"{name}@example.fr", None, **{**fields, **overrides})


@pytest.fixture
def population(engine: Engine) -> dict[str, uuid.UUID]:
    leads = {
        "silent": prospect(engine, "silent"),
        "never-engaged": prospect(engine, "never-engaged", last_engaged_at=None),
        "only-opens": prospect(engine, "only-opens"),
        "former-customer-long-ago": prospect(
            engine, "former-customer-long-ago", status="former_customer", last_purchase_at=LONG_AGO
        ),
        "clicked-recently": prospect(engine, "clicked-recently"),
        "downloaded-recently": prospect(engine, "downloaded-recently"),
        "engaged-two-years-ago": prospect(engine, "engaged-two-years-ago", last_engaged_at=T0 - 2 * YEAR),
        "customer": prospect(engine, "customer", status="customer"),
        "former-customer-recent": prospect(
            engine, "former-customer-recent", status="former_customer", last_purchase_at=T0 - YEAR
        ),
        "new": prospect(engine, "new", created_at=T0 - YEAR, last_engaged_at=None),
    }
    add_event(engine, leads["only-opens"], "open", at=T0 - 30 * timedelta(days=1))
    add_event(engine, leads["clicked-recently"], "click", at=T0 - YEAR)  # not yet folded into last_engaged_at
    with engine.begin() as conn:
        conn.execute(
            FORMS.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "form_id": "livre-blanc",
                    "submission_key": "k-1",
                    "email": "downloaded-recently@example.fr",
                    "lead_id": leads["downloaded-recently"],
                    "status": "received",
                    "payload": {},
                    "received_at": T0 - YEAR,
                }
            ],
        )
    return leads


def remaining(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {email.split("@")[0] for email in conn.execute(select(LEADS.c.email)).scalars()}


def test_purge_removes_prospects_silent_for_three_years(
    engine: Engine, population: dict[str, uuid.UUID]
) -> None:
    with engine.begin() as conn:
        report = purge_inactive(conn, now=T0)

    gone = {"silent", "never-engaged", "only-opens", "former-customer-long-ago"}
    assert remaining(engine) == set(population) - gone
    assert report.leads == 4
    assert report.by_status == {"cold": 3, "former_customer": 1}
    assert report.rows == {"leads": 4, "events": 1}
    assert report.cutoff == T0.replace(year=T0.year - 3)
    assert not report.dry_run
    assert count_rows(engine, EVENTS, EVENTS.c.lead_id == population["only-opens"]) == 0


def test_the_retention_period_is_configurable(engine: Engine, population: dict[str, uuid.UUID]) -> None:
    with engine.begin() as conn:
        report = purge_inactive(conn, now=T0, years=5)
    assert report.leads == 0
    with engine.begin() as conn:
        report = purge_inactive(conn, now=T0, years=1)
    assert report.leads == 5  # engaged two years ago is now past the period too
    assert "engaged-two-years-ago" not in remaining(engine)


def test_a_dry_run_counts_and_changes_nothing(engine: Engine, population: dict[str, uuid.UUID]) -> None:
    with engine.begin() as conn:
        report = purge_inactive(conn, now=T0, dry_run=True)
    assert report.dry_run
    assert report.leads == 4
    assert report.rows == {"leads": 4, "events": 1}
    assert remaining(engine) == set(population)


def test_purged_addresses_keep_their_opposition_hash_without_the_address(
    engine: Engine, population: dict[str, uuid.UUID]
) -> None:
    with engine.begin() as conn:
        suppress(conn, channel="email", address="silent@example.fr", reason="unsubscribe", source="x", now=T0)
        suppress(
            conn, channel="email", address="customer@example.fr", reason="unsubscribe", source="x", now=T0
        )
        purge_inactive(conn, now=T0)
    with engine.connect() as conn:
        rows = {r["address_hash"]: r["address"] for r in conn.execute(select(SUPPRESSIONS)).mappings()}
    assert rows == {
        address_hash("email", "silent@example.fr"): None,
        address_hash("email", "customer@example.fr"): "customer@example.fr",
    }


def test_the_retention_period_must_be_positive(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="at least 1 year"):
        purge_inactive(conn, now=T0, years=0)
