"""Every public endpoint under hostile input: random bodies, content types, headers, signatures,
timestamps, tokens and paths. The answer is always a 2xx (a valid case) or a 4xx, never a 500 or
a traceback, and a refused request leaves every table exactly as it was."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from spirale.settings import Settings
from tests.api.conftest import API_TOKEN, TWILIO_TOKEN, SendGridSigner, twilio_headers
from tests.api.endpoint_probes import (
    assert_clean_answer,
    bodies,
    content_types,
    database_state,
    form_fields,
    headers_of,
    json_values,
    junk_text,
    row_counts,
    signatures,
)
from tests.events.factories import Clock, add_enrollment, add_lead, add_outbox

pytestmark = pytest.mark.db
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SECRETS = ("unsubscribe-secret", API_TOKEN, TWILIO_TOKEN)
SG_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SG_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


@pytest.fixture
def seeded(engine: Engine) -> uuid.UUID:
    """A lead with an enrollment and a sent message, so a forged event would have something to change."""
    lead_id = add_lead(engine, email="camille@example.fr")
    enrollment_id = add_enrollment(engine, lead_id)
    add_outbox(engine, lead_id, enrollment_id, to_address="camille@example.fr", state="unknown")
    return lead_id


def post_refused(
    client: httpx.Client,
    engine: Engine,
    url: str,
    content: bytes,
    headers: Mapping[str, str] | Mapping[bytes, bytes],
) -> httpx.Response:
    """Post, check the answer is clean, and check a refusal changed nothing."""
    before = database_state(engine)
    response = client.post(url, content=content, headers=headers)
    assert_clean_answer(response, SECRETS)
    if response.status_code >= 400:
        assert database_state(engine) == before, (url, response.status_code)
    return response


timestamps = st.one_of(
    st.none(),
    junk_text,
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["-1", "0", "9" * 40, "1e9", " 1700000000", "0x10", "١٢٣"]),
)


@FUZZ
@given(body=bodies, content_type=content_types, signature=signatures, timestamp=timestamps)
def test_sendgrid_refuses_unsigned_and_garbage_requests(
    client: httpx.Client,
    engine: Engine,
    seeded: uuid.UUID,
    body: bytes,
    content_type: str | None,
    signature: str | None,
    timestamp: str | None,
) -> None:
    headers = headers_of(content_type, {SG_SIGNATURE: signature, SG_TIMESTAMP: timestamp})
    response = post_refused(client, engine, "/webhooks/sendgrid", body, headers)
    assert response.status_code in (403, 413)


@FUZZ
@given(body=bodies, offset=st.integers(min_value=-3 * 3600, max_value=3 * 3600), sign_other=st.booleans())
def test_sendgrid_signature_and_freshness_decide_before_the_body(
    client: httpx.Client,
    engine: Engine,
    clock: Clock,
    sendgrid_signer: SendGridSigner,
    seeded: uuid.UUID,
    body: bytes,
    offset: int,
    sign_other: bool,
) -> None:
    signed_at = int(clock.now.timestamp()) + offset
    headers = sendgrid_signer.headers(body + b"x" if sign_other else body, signed_at)
    response = post_refused(client, engine, "/webhooks/sendgrid", body, headers)
    fresh = -600 <= offset <= 60
    if sign_other or not fresh:
        assert response.status_code in (403, 413)


sendgrid_items = st.lists(
    st.fixed_dictionaries(
        {"event": st.sampled_from(["click", "open", "bounce", "delivered", "machine_opened"]) | junk_text},
        optional={
            "timestamp": st.integers() | st.floats() | junk_text | st.none(),
            "sg_message_id": junk_text,
            "email": junk_text,
            "outbox_id": junk_text | st.uuids().map(str),
            "lead_id": junk_text | st.uuids().map(str),
            "type": st.sampled_from(["bounce", "blocked"]) | junk_text,
            "extra": json_values,
        },
    )
    | json_values,
    max_size=5,
)


@FUZZ
@given(payload=sendgrid_items | json_values)
def test_signed_sendgrid_payloads_of_any_shape_never_fail(
    client: httpx.Client, clock: Clock, sendgrid_signer: SendGridSigner, seeded: uuid.UUID, payload: object
) -> None:
    body = json.dumps(payload).encode()
    response = client.post(
        "/webhooks/sendgrid", content=body, headers=sendgrid_signer.headers(body, int(clock.now.timestamp()))
    )
    assert_clean_answer(response, SECRETS)
    assert response.status_code == (200 if isinstance(payload, list) else 400)


twilio_paths = st.sampled_from(["/webhooks/twilio/status", "/webhooks/twilio/inbound"]).flatmap(
    lambda path: st.one_of(st.just(path), junk_text.map(lambda query: f"{path}?outbox_id={quote(query)}"))
)


@FUZZ
@given(path=twilio_paths, body=bodies, content_type=content_types, signature=signatures)
def test_twilio_refuses_unsigned_and_garbage_requests(
    client: httpx.Client,
    engine: Engine,
    seeded: uuid.UUID,
    path: str,
    body: bytes,
    content_type: str | None,
    signature: str | None,
) -> None:
    headers = headers_of(content_type, {"X-Twilio-Signature": signature})
    response = post_refused(client, engine, path, body, headers)
    assert response.status_code in (403, 413)


twilio_params = st.dictionaries(
    st.sampled_from(["MessageSid", "SmsSid", "MessageStatus", "From", "To", "Body", "ErrorCode"]) | junk_text,
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
    max_size=7,
)


@FUZZ
@given(path=twilio_paths, params=twilio_params, tamper=st.booleans())
def test_signed_twilio_callbacks_of_any_shape_never_fail(
    client: httpx.Client, engine: Engine, seeded: uuid.UUID, path: str, params: dict[str, str], tamper: bool
) -> None:
    headers = twilio_headers(path, params)
    sent = {**params, "Tampered": "1"} if tamper else params
    response = post_refused(client, engine, path, urlencode(sent).encode(), headers)
    if tamper:
        assert response.status_code == 403


@FUZZ
@given(form_id=st.sampled_from(["livre-blanc", "nope"]) | junk_text, body=bodies, content_type=content_types)
def test_forms_store_nothing_for_an_invalid_submission(
    client: httpx.Client, engine: Engine, form_id: str, body: bytes, content_type: str | None
) -> None:
    before = database_state(engine)
    response = client.post(
        f"/forms/{quote(form_id, safe='')}", content=body, headers=headers_of(content_type, {})
    )
    assert_clean_answer(response, SECRETS)
    after = database_state(engine)
    if response.status_code == 202:
        grown = {name for name, rows in row_counts(after).items() if rows != row_counts(before)[name]}
        assert grown <= {"form_submissions"}
    else:
        assert after == before


@FUZZ
@given(fields=form_fields | json_values)
def test_forms_answer_json_fields_of_any_type_with_202_or_a_4xx(
    client: httpx.Client, engine: Engine, settings_form: str, fields: object
) -> None:
    before = database_state(engine)
    body = json.dumps(fields).encode()  # NaN and Infinity included, as a browser script may send
    response = client.post(
        f"/forms/{settings_form}", content=body, headers={"Content-Type": "application/json"}
    )
    assert_clean_answer(response, SECRETS)
    if response.status_code != 202:
        assert database_state(engine) == before


@pytest.fixture
def settings_form(settings: Settings) -> str:
    """A form id the test sequences define."""
    from sequences.forms import forms_path, load_forms

    return sorted(load_forms(forms_path(settings.sequences_dir)))[0]


def test_a_deeply_nested_form_body_is_a_400(client: httpx.Client, engine: Engine, settings_form: str) -> None:
    before = database_state(engine)
    response = client.post(
        f"/forms/{settings_form}", content=b"[" * 5000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert database_state(engine) == before


def test_a_deeply_nested_signed_sendgrid_body_is_a_400(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner
) -> None:
    body = b"[" * 5000
    headers = sendgrid_signer.headers(body, int(clock.now.timestamp()))
    before = database_state(engine)
    assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 400
    assert database_state(engine) == before


tokens = st.one_of(
    junk_text,
    st.text(max_size=120),
    st.binary(max_size=64).map(lambda raw: raw.hex() + "." + raw[::-1].hex()),
).filter(lambda token: token not in {".", ".."})  # dot segments: the client drops them from the path


@FUZZ
@given(token=tokens, method=st.sampled_from(["GET", "POST"]), body=bodies)
def test_forged_unsubscribe_tokens_are_404_and_change_nothing(
    client: httpx.Client, engine: Engine, seeded: uuid.UUID, token: str, method: str, body: bytes
) -> None:
    before = database_state(engine)
    response = client.request(method, f"/unsubscribe/{quote(token, safe='')}", content=body)
    assert_clean_answer(response, SECRETS)
    assert response.status_code in (404, 405)
    assert database_state(engine) == before


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# Non-UTF-8 bodies with a valid token have their own (failing) test below.
utf8_bodies = bodies.filter(_is_utf8)
auth_headers = st.one_of(
    st.none(),
    junk_text,
    st.just(f"Bearer {API_TOKEN}"),
    st.just(f"bearer  {API_TOKEN} "),
    junk_text.map(lambda text: f"Bearer {text}"),
    st.just(f"Basic {API_TOKEN}"),
)
write_paths = st.one_of(
    st.just("/conversions"),
    st.uuids().map(lambda task: f"/tasks/{task}/outcome"),
    junk_text.map(lambda task: f"/tasks/{quote(task, safe='')}/outcome"),
)


@FUZZ
@given(path=write_paths, authorization=auth_headers, body=utf8_bodies, content_type=content_types)
def test_write_endpoints_refuse_bad_tokens_and_bodies_without_change(
    client: httpx.Client,
    engine: Engine,
    seeded: uuid.UUID,
    path: str,
    authorization: str | None,
    body: bytes,
    content_type: str | None,
) -> None:
    headers = headers_of(content_type, {"Authorization": authorization})
    response = post_refused(client, engine, path, body, headers)
    assert response.status_code >= 400  # no task exists and no generated email names a lead


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=st.dictionaries(st.sampled_from(["Accept", "X-Forwarded-For", "Host", "Cookie"]), junk_text))
def test_health_answers_whatever_the_headers(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.get("/health", headers=headers)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_stale_and_future_sendgrid_timestamps_bound_the_window(
    client: httpx.Client, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner
) -> None:
    body = b"[]"
    now = clock.now
    for moment, expected in (
        (now - timedelta(minutes=11), 403),
        (now + timedelta(minutes=2), 403),
        (now, 200),
    ):
        headers = sendgrid_signer.headers(body, int(moment.timestamp()))
        assert post_refused(client, engine, "/webhooks/sendgrid", body, headers).status_code == expected


@pytest.mark.parametrize("path", ["/conversions", f"/tasks/{uuid.UUID(int=1)}/outcome"])
def test_a_non_utf8_body_with_a_valid_token_is_a_4xx(client: httpx.Client, engine: Engine, path: str) -> None:
    before = database_state(engine)
    response = client.post(path, content=b"\x80", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert 400 <= response.status_code < 500
    assert database_state(engine) == before
