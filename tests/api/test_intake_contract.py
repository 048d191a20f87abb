"""What the endpoint stores is what the intake reads: a submitted form becomes a lead under the
very id the 202 answer promised."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import Engine

from sequences.catalog import SequenceCatalog
from spirale.settings import Settings
from tests.events.factories import Clock, lead

pytestmark = pytest.mark.db


def test_the_intake_creates_the_promised_lead(
    client: httpx.Client, engine: Engine, settings: Settings, clock: Clock
) -> None:
    intake = pytest.importorskip("spirale.intake")
    body = {
        "email": "Dirigeante@Atelier-Martin.fr",
        "first_name": "Camille",
        "last_name": "Martin",
        "company": "Atelier Martin",
        "job_title": "Gérante",
        "phone": "06 12 34 56 78",
        "consent_email": "on",
    }
    lead_id = uuid.UUID(client.post("/forms/livre-blanc", data=body).json()["lead_id"])
    catalog = SequenceCatalog.open(settings.sequences_dir)
    intake.process_submissions(engine, now=clock.now, settings=settings, catalog=catalog)
    created = lead(engine, lead_id)
    assert (created.email, created.first_name, created.company) == (
        "dirigeante@atelier-martin.fr",
        "Camille",
        "Atelier Martin",
    )
    assert (created.phone, created.consent_email, created.consent_sms) == ("+33612345678", True, False)
    assert created.attributes == {}
    assert client.post("/forms/livre-blanc", data=body).json()["lead_id"] == str(lead_id)
