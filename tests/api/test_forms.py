"""Form intake: stored durably first, idempotent, 202 with the lead id, 422 naming the field,
4xx (never 500) for malformed bodies."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from models.tables import FormSubmission
from spirale.api.app import create_app
from spirale.api.context import AcceptedSubmission
from spirale.api.forms import store_submission, validate_submission
from spirale.errors import ConfigError
from spirale.settings import Settings
from tests.api.client import in_process_client
from tests.events.factories import Clock, add_lead

pytestmark = pytest.mark.db
SUBMISSIONS = FormSubmission.__table__  # type: ignore[attr-defined]
FORM = {
    "email": "Camille.Martin@Atelier.fr",
    "first_name": "Camille",
    "company": "Atelier",
    "consent_email": True,
}


def submissions(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(SUBMISSIONS)).mappings()]


def test_a_submission_is_stored_and_answered_202_with_the_lead_id(
    client: httpx.Client, engine: Engine
) -> None:
    response = client.post("/forms/livre-blanc", json={**FORM, "phone": "06 12 34 56 78", "country": "fr"})
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    lead_id = uuid.UUID(response.json()["lead_id"])
    [row] = submissions(engine)
    assert row["lead_id"] == lead_id
    assert row["status"] == "received"
    assert row["email"] == "camille.martin@atelier.fr"
    payload = row["payload"]
    assert isinstance(payload, dict)
    assert payload == {
        "email": "camille.martin@atelier.fr",
        "first_name": "Camille",
        "company": "Atelier",
        "phone": "+33612345678",
        "country": "FR",
        "consent_email": True,
        "consent_sms": False,
    }


def test_form_encoded_bodies_are_accepted(client: httpx.Client, engine: Engine) -> None:
    response = client.post(
        "/forms/checklist-rgpd",
        content=b"email=a%40example.fr&first_name=Ren%C3%A9&consent_email=on",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 202
    [row] = submissions(engine)
    payload = row["payload"]
    assert isinstance(payload, dict)
    assert payload["first_name"] == "René"
    assert payload["consent_email"] is True


def test_the_same_submission_twice_answers_the_same_lead_and_stores_one_row(
    client: httpx.Client, engine: Engine
) -> None:
    first = client.post("/forms/livre-blanc", json=FORM)
    again = client.post("/forms/livre-blanc", json={**FORM, "email": "camille.martin@atelier.fr"})
    assert first.json()["lead_id"] == again.json()["lead_id"]
    assert len(submissions(engine)) == 1


def test_a_submission_id_makes_the_key_and_the_next_day_is_a_new_submission(
    client: httpx.Client, engine: Engine, clock: Clock
) -> None:
    client.post("/forms/livre-blanc", json={**FORM, "submission_id": "abc-1"})
    client.post("/forms/livre-blanc", json={**FORM, "submission_id": "abc-1"})
    assert len(submissions(engine)) == 1
    client.post("/forms/livre-blanc", json={**FORM, "submission_id": "abc-2"})
    assert len(submissions(engine)) == 2
    clock.now = clock.now.replace(day=clock.now.day + 1)
    answer = client.post("/forms/livre-blanc", json=FORM)
    rows = submissions(engine)
    assert len(rows) == 3
    # Every submission of one new email is promised the same lead.
    assert {row["lead_id"] for row in rows} == {uuid.UUID(answer.json()["lead_id"])}


def test_a_known_email_answers_its_lead_id(client: httpx.Client, engine: Engine) -> None:
    lead_id = add_lead(engine, email="camille.martin@atelier.fr")
    response = client.post("/forms/webinar", json=FORM)
    assert response.json() == {"lead_id": str(lead_id), "status": "accepted"}


INVALID_FIELDS: list[tuple[dict[str, object], str]] = [
    ({"first_name": "Sans adresse"}, "email"),
    ({"email": "pas-une-adresse"}, "email"),
    ({"email": 42}, "email"),
    ({"email": "a@example.fr", "phone": "12"}, "phone"),
    ({"email": "a@example.fr", "country": "France"}, "country"),
    ({"email": "a@example.fr", "consent_sms": "peut-être"}, "consent_sms"),
    ({"email": "a@example.fr", "company": "x" * 201}, "company"),
    ({"email": "a@example.fr", "last_name": "a\x00b"}, "last_name"),
]
MALFORMED: list[tuple[bytes, str, int]] = [
    (b"{", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b"null", "application/json", 400),
    (b"", "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    (b"\xff=\xfe", "application/x-www-form-urlencoded", 400),
    (b"email=a@example.fr", "text/plain", 415),
    (b"email=a@example.fr", "", 415),
    (b"--x\r\n", "multipart/form-data; boundary=x", 415),
    (b"{" + b" " * 70_000 + b"}", "application/json", 413),
]


def test_invalid_fields_answer_422_naming_the_field(client: httpx.Client, engine: Engine) -> None:
    for body, field in INVALID_FIELDS:
        response = client.post("/forms/livre-blanc", json=body)
        assert response.status_code == 422, body
        assert response.json()["field"] == field
        assert response.json()["detail"].startswith(f"{field}: ")
    assert submissions(engine) == []


def test_malformed_bodies_answer_4xx(client: httpx.Client, engine: Engine) -> None:
    for content, content_type, status in MALFORMED:
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post("/forms/livre-blanc", content=content, headers=headers)
        assert response.status_code == status, (content[:20], content_type)
    assert submissions(engine) == []


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"]),
)
def test_no_body_ever_causes_a_500(client: httpx.Client, content: bytes, content_type: str) -> None:
    response = client.post("/forms/livre-blanc", content=content, headers={"Content-Type": content_type})
    assert response.status_code < 500


def test_an_unknown_form_answers_404_and_stores_nothing(client: httpx.Client, engine: Engine) -> None:
    assert client.post("/forms/no-such-form", json=FORM).status_code == 404
    assert submissions(engine) == []


def test_the_intake_is_started_once_per_new_submission(settings: Settings, clock: Clock) -> None:
    started: list[AcceptedSubmission] = []
    with in_process_client(create_app(settings, clock=clock, start_intake=started.append)) as client:
        lead_id = client.post("/forms/livre-blanc", json=FORM).json()["lead_id"]
        client.post("/forms/livre-blanc", json=FORM)
    [accepted] = started
    assert str(accepted.lead_id) == lead_id
    assert (accepted.form_id, accepted.sequence, accepted.new) == ("livre-blanc", "whitepaper-nurture", True)


def test_a_failing_intake_trigger_keeps_the_submission(
    settings: Settings, clock: Clock, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    def unreachable(_: AcceptedSubmission) -> None:
        raise ConnectionError("no Prefect server at http://127.0.0.1:4200/api")

    with in_process_client(create_app(settings, clock=clock, start_intake=unreachable)) as client:
        caplog.set_level(logging.WARNING, logger="spirale.api.forms")
        response = client.post("/forms/livre-blanc", json=FORM)
    assert response.status_code == 202
    assert len(submissions(engine)) == 1
    assert "waits for the next intake run" in caplog.text


def test_the_api_refuses_an_unmigrated_database(empty_database_url: str, settings: Settings) -> None:
    with pytest.raises(ConfigError, match="not migrated"):
        create_app(settings.model_copy(update={"database_url": empty_database_url}))


def test_health(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_concurrent_submissions_of_one_email_agree_on_one_lead(app: FastAPI, engine: Engine) -> None:
    context = app.state.context
    submission = validate_submission({"email": "rush@example.fr"})
    forms = ["livre-blanc", "checklist-rgpd", "webinar", "newsletter"] * 4
    with ThreadPoolExecutor(8) as pool:
        accepted = list(
            pool.map(
                lambda form_id: store_submission(context, form_id, context.forms[form_id], submission), forms
            )
        )
    assert len({a.lead_id for a in accepted}) == 1
    assert sum(a.new for a in accepted) == 4  # one row per form (same email, same day)
    assert len(submissions(engine)) == 4
