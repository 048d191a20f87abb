"""The API under a real uvicorn server on 127.0.0.1: a form, a signed SendGrid click and a Twilio
STOP over loopback, processed right after each answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from tests.api.conftest import SendGridSigner, json_body, twilio_headers
from tests.events.factories import Clock, add_enrollment, add_lead, add_outbox, enrollment, lead, suppressed

pytestmark = pytest.mark.db
PHONE = "+33698765432"


@pytest.fixture
def live(app: FastAPI) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Event processing runs after the answer: wait for its effect (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the effect did not happen in time"
        time.sleep(0.02)


def test_the_loop_over_loopback(
    live: str, engine: Engine, clock: Clock, sendgrid_signer: SendGridSigner
) -> None:
    lead_id = add_lead(engine, email="camille@example.fr", phone=PHONE)
    enrollment_id = add_enrollment(engine, lead_id, "reactivation-offer")
    outbox_id = add_outbox(engine, lead_id, enrollment_id, to_address="camille@example.fr")
    with httpx.Client(base_url=live) as client:
        answer = client.post("/forms/livre-blanc", json={"email": "new@example.fr"})
        assert answer.status_code == 202
        assert client.get("/health").json() == {"status": "ok"}

        click = json_body(
            [
                {
                    "email": "camille@example.fr",
                    "timestamp": int(clock.now.timestamp()),
                    "event": "click",
                    "sg_message_id": "abc.filter",
                    "outbox_id": str(outbox_id),
                }
            ]
        )
        headers = sendgrid_signer.headers(click, int(clock.now.timestamp()))
        assert client.post("/webhooks/sendgrid", content=click, headers=headers).status_code == 200
        eventually(lambda: lead(engine, lead_id).last_engaged_at is not None)

        params = {"MessageSid": "SM" + "9" * 32, "From": PHONE, "Body": "STOP"}
        stop = client.post(
            "/webhooks/twilio/inbound",
            content=urlencode(params).encode(),
            headers=twilio_headers("/webhooks/twilio/inbound", params),
        )
        assert stop.status_code == 200
        eventually(lambda: suppressed(engine, "sms", PHONE))
    assert enrollment(engine, enrollment_id).state == "exited"
