"""The bearer-token endpoints: sales task outcomes and conversions."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import Engine

from models.tables import SalesTask
from spirale.api.app import create_app
from spirale.settings import Settings
from tests.api.client import in_process_client
from tests.api.conftest import API_TOKEN
from tests.events.factories import EVENTS, MONDAY, add_enrollment, add_lead, count

pytestmark = pytest.mark.db
TASKS = SalesTask.__table__  # type: ignore[attr-defined]
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def test_write_endpoints_need_the_token(client: httpx.Client, engine: Engine) -> None:
    lead_id = add_lead(engine)
    body = {"lead_id": str(lead_id), "value": 120.0, "source": "shop", "external_id": "A-1"}
    assert client.post("/conversions", json=body).status_code == 401
    assert (
        client.post("/conversions", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert (
        client.post(f"/tasks/{uuid.uuid4()}/outcome", json={"outcome": "reached", "actor": "a"}).status_code
        == 401
    )
    assert count(engine, EVENTS) == 0


def test_write_endpoints_are_closed_without_a_configured_token(settings: Settings, engine: Engine) -> None:
    with in_process_client(create_app(settings.model_copy(update={"api_token": None}))) as client:
        assert client.post("/conversions", json={"email": "a@example.fr"}, headers=AUTH).status_code == 403


def test_a_conversion_is_recorded_once(client: httpx.Client, engine: Engine) -> None:
    lead_id = add_lead(engine)
    body = {"lead_id": str(lead_id), "value": 120.0, "source": "shop", "external_id": "A-1"}
    assert client.post("/conversions", json=body, headers=AUTH).status_code == 201
    assert client.post("/conversions", json=body, headers=AUTH).json() == {"recorded": False}
    assert count(engine, EVENTS) == 1


def test_a_bad_conversion_is_a_422(client: httpx.Client, engine: Engine) -> None:
    unknown = client.post("/conversions", json={"email": "nobody@example.fr"}, headers=AUTH)
    assert unknown.status_code == 422
    assert (
        client.post("/conversions", json={"email": "a@example.fr", "value": -1}, headers=AUTH).status_code
        == 422
    )
    assert count(engine, EVENTS) == 0


def test_a_task_outcome_is_recorded(client: httpx.Client, engine: Engine) -> None:
    lead_id = add_lead(engine, status="hot")
    enrollment_id = add_enrollment(engine, lead_id, "sales-cadence", step_index=1)
    task_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            TASKS.insert().values(
                id=task_id,
                lead_id=lead_id,
                enrollment_id=enrollment_id,
                sequence_name="sales-cadence",
                step_id="first-call",
                kind="task",
                state="open",
                due_at=MONDAY,
                created_at=MONDAY,
            )
        )
    response = client.post(
        f"/tasks/{task_id}/outcome", json={"outcome": "meeting", "actor": "alice"}, headers=AUTH
    )
    assert response.status_code == 200
    assert response.json()["cadence_ended"] is True
    again = client.post(
        f"/tasks/{task_id}/outcome", json={"outcome": "no-answer", "actor": "alice"}, headers=AUTH
    )
    assert again.status_code == 409
    missing = client.post(
        f"/tasks/{uuid.uuid4()}/outcome", json={"outcome": "meeting", "actor": "a"}, headers=AUTH
    )
    assert missing.status_code == 404
