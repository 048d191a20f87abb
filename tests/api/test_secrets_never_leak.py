"""Secrets never show: not in a log record (DEBUG, every logger of the API, the channels, uvicorn
and SQLAlchemy), not in an answer, not in ``str``/``repr`` of the settings, whether requests are
forged, authentic, or end in a provider error."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from channels.base import EmailMessage
from channels.registry import build_email_channel
from models.db import make_engine
from spirale.api.app import create_app
from spirale.errors import PermanentSendError
from spirale.settings import Settings
from tests.api.client import in_process_client
from tests.api.conftest import PUBLIC_URL, SendGridSigner, twilio_headers
from tests.api.endpoint_probes import assert_clean_answer, secrets_in
from tests.events.factories import Clock, add_lead
from tests.fakes.providers import TWILIO, TWILIO_ACCOUNT_SID, FakeProviders, Fault, running_fake_providers

pytestmark = pytest.mark.db
SECRET_KEY = "sk-unsub-5f1c9e0a7d3b"
API_TOKEN = "tok-api-93be02c4aa71"
TWILIO_TOKEN = "tw-auth-c0ffee4d1e5a"
SENDGRID_KEY = "SG.secret-e1f2a3b4c5d6"
DB_PASSWORD = "pw-db-7a6b5c4d3e2f"
SECRETS = (SECRET_KEY, API_TOKEN, TWILIO_TOKEN, SENDGRID_KEY, DB_PASSWORD)
LOGGERS = ("spirale", "channels", "models", "uvicorn", "sqlalchemy", "twilio")


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with running_fake_providers() as running:
        yield running


@pytest.fixture
def secret_settings(settings: Settings, fake: FakeProviders) -> Settings:
    """The test settings with every secret set; the providers are the loopback fake, which
    refuses these credentials (a provider error on every send)."""
    return Settings(
        **{
            **settings.model_dump(),
            "database_url": with_password(settings.database_url),
            "secret_key": SECRET_KEY,
            "api_token": API_TOKEN,
            "twilio_auth_token": TWILIO_TOKEN,
            "twilio_account_sid": TWILIO_ACCOUNT_SID,
            "twilio_from": "+33700000000",
            "twilio_base_url": fake.url,
            "sms_channel": "twilio",
            "sendgrid_api_key": SENDGRID_KEY,
            "sendgrid_host": fake.url,
            "email_channel": "sendgrid",
        }
    )


def with_password(url: str) -> str:
    """The URL with a password where the database takes one (the test server trusts loopback)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(password=DB_PASSWORD).render_as_string(hide_password=False)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No record, its arguments or its formatted exception shows a secret."""
    assert caplog.records, "the scenario logged nothing: the check would prove nothing"
    for record in caplog.records:
        shown = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        assert not secrets_in(shown, SECRETS), (record.name, record.levelname)
    assert not secrets_in(caplog.text, SECRETS)


def inbound(client: httpx.Client, body: str, sid: str, *, token: str = TWILIO_TOKEN) -> httpx.Response:
    path = "/webhooks/twilio/inbound"
    params = {"MessageSid": sid, "From": "+33612345678", "To": "+33700000000", "Body": body}
    return client.post(
        path, content=urlencode(params).encode(), headers=twilio_headers(path, params, token=token)
    )


def test_the_settings_never_show_their_secret_fields(secret_settings: Settings) -> None:
    for secret in (SECRET_KEY, API_TOKEN, TWILIO_TOKEN, SENDGRID_KEY):
        assert secret not in str(secret_settings) and secret not in repr(secret_settings)


def test_the_settings_never_show_the_database_password(settings: Settings) -> None:
    leaky = Settings(
        **{**settings.model_dump(), "database_url": f"postgresql://spirale:{DB_PASSWORD}@db/spirale"}
    )
    assert not secrets_in(leaky, SECRETS)


def test_webhooks_forged_and_authentic_leak_nothing(
    secret_settings: Settings,
    clock: Clock,
    sendgrid_signer: SendGridSigner,
    fake: FakeProviders,
    logs: pytest.LogCaptureFixture,
) -> None:
    add_lead(create_app_engine(secret_settings), phone="+33612345678")
    fake.script(TWILIO, [Fault.reject(400, 21610, "opted out"), Fault.server_error()])
    with in_process_client(create_app(secret_settings, clock=clock)) as client:
        answers = [
            inbound(client, "HELP", "SM" + "1" * 32),  # authentic; the help SMS meets a provider error
            inbound(client, "INFO", "SM" + "2" * 32),
            inbound(client, "STOP", "SM" + "3" * 32, token="forged-token"),
            client.post(
                "/webhooks/twilio/status", content=b"MessageSid=x", headers={"X-Twilio-Signature": "x"}
            ),
            client.post(
                "/webhooks/sendgrid", content=b"[]", headers={"X-Twilio-Email-Event-Webhook-Signature": "x"}
            ),
            client.post("/webhooks/sendgrid", content=b"[]", headers=sendgrid_signer.headers(b"[]", 1)),
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 403, 403, 403, 403]
    for answer in answers:
        assert_clean_answer(answer, SECRETS)
    assert fake.requests(TWILIO), "the help answers reached the provider"
    assert_no_secret_logged(logs)


def test_write_endpoints_and_links_leak_nothing(
    secret_settings: Settings, clock: Clock, logs: pytest.LogCaptureFixture
) -> None:
    from channels.unsubscribe import UnsubscribeSigner

    lead_id = add_lead(create_app_engine(secret_settings), email="camille@example.fr")
    token = UnsubscribeSigner(SECRET_KEY).sign(lead_id=str(lead_id), channel="email")
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with in_process_client(create_app(secret_settings, clock=clock)) as client:
        answers = [
            client.post(
                "/conversions", json={"email": "camille@example.fr"}, headers={"Authorization": "Bearer no"}
            ),
            client.post(
                "/conversions", json={"email": "camille@example.fr", "external_id": "A"}, headers=auth
            ),
            client.post("/conversions", json={"email": "nobody@example.fr"}, headers=auth),
            client.post("/tasks/not-a-uuid/outcome", json={"outcome": "x", "actor": "y"}, headers=auth),
            client.get(f"/unsubscribe/{token}x"),
            client.get(f"/unsubscribe/{token}"),
            client.post(f"/unsubscribe/{token}"),
            client.post("/forms/livre-blanc", json={"email": "new@example.fr"}),
            client.post("/forms/livre-blanc", json={"email": "not an email"}),
        ]
    assert [answer.status_code for answer in answers] == [401, 201, 422, 422, 404, 200, 200, 202, 422]
    for answer in answers:
        assert_clean_answer(answer, SECRETS)
    assert_no_secret_logged(logs)


def test_a_sendgrid_provider_error_leaks_no_api_key(
    secret_settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    channel = build_email_channel(secret_settings)
    message = EmailMessage(
        outbox_id="o-1",
        to="camille@example.fr",
        subject="Bonjour",
        html="<p>Bonjour</p>",
        text="Bonjour",
        from_email="marketing@spirale.example",
        from_name="Spirale",
    )
    logging.getLogger("spirale").debug("sending through %s", PUBLIC_URL)  # the check needs one record
    with pytest.raises(PermanentSendError) as refused:  # the fake refuses this key: 401
        channel.send(message)
    shown = "".join(traceback.format_exception(refused.value))
    assert not secrets_in(shown, SECRETS)
    assert not secrets_in(refused.value.__cause__, SECRETS)
    assert not secrets_in(channel, SECRETS)
    assert_no_secret_logged(logs)


def test_the_sendgrid_sdk_logger_shows_no_api_key(
    secret_settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    logs.set_level(logging.DEBUG, logger="python_http_client")
    test_a_sendgrid_provider_error_leaks_no_api_key(secret_settings, logs)


def create_app_engine(settings: Settings) -> Engine:
    """The engine of the settings' database (to seed it before the app starts)."""
    return make_engine(settings.database_url)
