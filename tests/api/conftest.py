"""The API over a real migrated database, with real SDK verifiers: a SendGrid ECDSA key pair made
for the test run, a Twilio auth token, signed unsubscribe tokens, a hand-moved clock."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from twilio.request_validator import RequestValidator

from spirale.api.app import create_app
from spirale.settings import Settings
from tests.api.client import in_process_client
from tests.events.factories import Clock, sequences_copy

PUBLIC_URL = "https://spirale.example"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
API_TOKEN = "api-token-for-tests"


class SendGridSigner:
    """Signs bodies as SendGrid does: ECDSA P-256 / SHA-256 over ``timestamp + body``, base64 DER."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        signature = self.key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
        }


def twilio_headers(path: str, params: dict[str, str], *, token: str = TWILIO_TOKEN) -> dict[str, str]:
    """Headers of a Twilio callback to ``PUBLIC_URL + path`` (path may carry a query)."""
    signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, params)
    return {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}


def json_body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()


@pytest.fixture(scope="session")
def sequences_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sequences_copy(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="session")
def sendgrid_signer() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(
    database_url: str, sequences_dir: Path, tmp_path: Path, sendgrid_signer: SendGridSigner
) -> Settings:
    return Settings(
        database_url=database_url,
        sequences_dir=sequences_dir,
        outbox_dir=tmp_path / "outbox",
        public_url=PUBLIC_URL,
        secret_key="unsubscribe-secret",  # type: ignore[arg-type]
        api_token=API_TOKEN,  # type: ignore[arg-type]
        sendgrid_webhook_public_key=sendgrid_signer.public_key,
        twilio_auth_token=TWILIO_TOKEN,  # type: ignore[arg-type]
        email_channel="local-outbox",
        sms_channel="local-outbox",
    )


@pytest.fixture
def app(settings: Settings, clock: Clock) -> FastAPI:
    return create_app(settings, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[httpx.Client]:
    with in_process_client(app) as test_client:
        yield test_client
