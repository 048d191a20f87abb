"""Unsubscribe links: GET shows a page and changes nothing; the RFC 8058 one-click POST
suppresses and exits marketing enrollments; forged tokens answer 404 and change nothing."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import Engine

from channels.unsubscribe import UnsubscribeSigner
from tests.events.factories import (
    EVENTS,
    TRANSACTIONAL,
    add_enrollment,
    add_lead,
    count,
    enrollment,
    snapshot,
    suppressed,
)

pytestmark = pytest.mark.db
SIGNER = UnsubscribeSigner("unsubscribe-secret")
EMAIL = "camille@example.fr"
PHONE = "+33612345678"


@pytest.fixture
def enrolled(engine: Engine) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    lead_id = add_lead(engine, email=EMAIL, phone=PHONE)
    return lead_id, add_enrollment(engine, lead_id), add_enrollment(engine, lead_id, TRANSACTIONAL)


def test_get_shows_a_confirmation_page_and_changes_nothing(
    client: httpx.Client, engine: Engine, enrolled: tuple
) -> None:
    token = SIGNER.sign(lead_id=str(enrolled[0]), channel="email")
    before = snapshot(engine)
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert 'method="post"' in page.text and "Confirmer" in page.text
    assert snapshot(engine) == before  # link scanners fetch URLs: a GET never unsubscribes


def test_one_click_post_suppresses_and_exits_marketing_enrollments(
    client: httpx.Client, engine: Engine, enrolled: tuple
) -> None:
    lead_id, nurture, receipts = enrolled
    token = SIGNER.sign(lead_id=str(lead_id), channel="email")
    # What Gmail sends (RFC 8058): no cookie, this exact body.
    response = client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert suppressed(engine, "email", EMAIL)
    assert not suppressed(engine, "sms", PHONE)
    assert (enrollment(engine, nurture).state, enrollment(engine, nurture).exit_reason) == (
        "exited",
        "unsubscribed",
    )
    assert enrollment(engine, receipts).state == "active"
    client.post(f"/unsubscribe/{token}")
    assert count(engine, EVENTS) == 1  # recorded once for scoring and exit_when


def test_an_sms_token_suppresses_the_number(client: httpx.Client, engine: Engine, enrolled: tuple) -> None:
    token = SIGNER.sign(lead_id=str(enrolled[0]), channel="sms")
    client.post(f"/unsubscribe/{token}")
    assert suppressed(engine, "sms", PHONE)
    assert not suppressed(engine, "email", EMAIL)


def test_forged_tokens_answer_404_and_change_nothing(
    client: httpx.Client, engine: Engine, enrolled: tuple
) -> None:
    lead_id = str(enrolled[0])
    genuine = SIGNER.sign(lead_id=lead_id, channel="email")
    forged = [
        UnsubscribeSigner("another-secret").sign(lead_id=lead_id, channel="email"),
        genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),
        SIGNER.sign(lead_id="not-a-uuid", channel="email"),
        SIGNER.sign(lead_id=lead_id, channel="fax"),
        "garbage",
        "a.b",
    ]
    before = snapshot(engine)
    for token in forged:
        assert client.get(f"/unsubscribe/{token}").status_code == 404, token
        assert client.post(f"/unsubscribe/{token}").status_code == 404, token
    assert snapshot(engine) == before


def test_a_token_of_an_erased_lead_shows_the_same_page(client: httpx.Client, engine: Engine) -> None:
    token = SIGNER.sign(lead_id=str(uuid.uuid4()), channel="email")
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    assert count(engine, EVENTS) == 0
