"""The whole loop under a real Prefect server.

``spirale serve`` runs in a child process (the API and every deployment): a form is posted to it
over loopback, its ``spirale.form.submitted`` event starts a served ``intake`` run that enrolls the
lead; dispatch ticks with a moving clock put the messages in the local outbox at their due times;
a signed SendGrid click and a Twilio STOP posted to the served API score the lead up, suppress its
number and end its enrollment. The server's scheduler is off in these tests (see conftest), so
only the test moves the clock.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL
from sqlalchemy import Engine, select

from flows.dispatch import dispatch
from flows.intake import intake
from flows.params import DispatchParams, EventsParams, IntakeParams
from flows.process_events import process_events
from models.suppressions import is_suppressed
from models.tables import Enrollment, FormSubmission, Lead, OutboxMessage
from spirale.api.app import create_app
from spirale.clock import utcnow
from spirale.settings import Settings
from tests.api.client import in_process_client
from tests.api.conftest import PUBLIC_URL, TWILIO_TOKEN, SendGridSigner, json_body, twilio_headers
from tests.flows.conftest import SHIPPED_LIBRARY
from tests.flows.prefect_api import artifacts, flow_run_id, read_flow_run

pytestmark = pytest.mark.db
LEADS = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS = Enrollment.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
SUBMISSIONS = FormSubmission.__table__  # type: ignore[attr-defined]
PARIS = ZoneInfo("Europe/Paris")
PHONE = "+33612345678"
# A warm lead by the shipped scoring rules (fit B: marketing head in France; a download): it goes
# to the form's sequence, whitepaper-nurture (an email at once, an SMS about a day later).
FORM = {
    "email": "camille.durand@atelier-durand.fr",
    "first_name": "Camille",
    "last_name": "Durand",
    "company": "Atelier Durand",
    "job_title": "Directrice marketing",
    "phone": PHONE,
    "country": "FR",
    "consent_email": True,
    "consent_sms": True,
}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one(engine: Engine, query: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(query).mappings().one_or_none()


def outbox_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(OUTBOX).order_by(OUTBOX.c.created_at)).mappings())


@pytest.fixture
def signer() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture
def served_env(spirale_env: Callable[..., Settings], signer: SendGridSigner) -> Settings:
    return spirale_env(
        SHIPPED_LIBRARY,
        SPIRALE_PUBLIC_URL=PUBLIC_URL,
        SPIRALE_SENDGRID_WEBHOOK_PUBLIC_KEY=signer.public_key,
        SPIRALE_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
    )


@pytest.fixture
def served(served_env: Settings, tmp_path: Path) -> Iterator[str]:
    """``spirale serve`` in a child process; yields the base URL of its API."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    command = [str(Path(sys.executable).parent / "spirale"), "serve", "--port", str(port)]
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the served API", lambda: _healthy(base, process, tmp_path / "serve.log"))
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Shown by pytest only when the test fails.
        print((tmp_path / "serve.log").read_text(errors="replace")[-6000:])


def _healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"spirale serve exited:\n{log.read_text(errors='replace')[-3000:]}")
    try:
        return httpx.get(f"{base}/health", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def flow_runs(flow_name: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def tick(now: datetime) -> int:
    """One dispatch tick at ``now``; returns how many messages it sent."""
    return dispatch(DispatchParams(now=now)).total_sent


def send_next_step(engine: Engine, enrollment_id: uuid.UUID, step_id: str) -> Any:
    """Tick a minute before the enrollment's next due instant (nothing goes), then at it: exactly
    the expected step goes out, stamped with that instant."""
    due = one(engine, select(ENROLLMENTS.c.next_due_at).where(ENROLLMENTS.c.id == enrollment_id))[
        "next_due_at"
    ]
    due = due if due.tzinfo else due.replace(tzinfo=UTC)
    assert tick(due - timedelta(minutes=1)) == 0
    before = {row["id"] for row in outbox_rows(engine)}
    assert tick(due) == 1
    [row] = [row for row in outbox_rows(engine) if row["id"] not in before]
    assert (row["step_id"], row["state"]) == (step_id, "sent")
    sent_at = row["sent_at"] if row["sent_at"].tzinfo else row["sent_at"].replace(tzinfo=UTC)
    assert sent_at == due
    return row


def test_the_intake_flow_takes_in_a_stored_submission(
    spirale_env: Callable[..., Settings], engine: Engine
) -> None:
    settings = spirale_env(SHIPPED_LIBRARY)
    with in_process_client(create_app(settings)) as client:
        response = client.post("/forms/livre-blanc", json=FORM)
    assert response.status_code == 202
    lead_id = uuid.UUID(response.json()["lead_id"])

    state = intake(IntakeParams(form_id="livre-blanc", limit=10), return_state=True)
    report = state.result()
    assert (report.processed, report.rejected) == (1, 0)
    run_id = flow_run_id(state)
    assert read_flow_run(run_id).name.startswith("intake-livre-blanc-")
    assert len(artifacts(run_id, "intake-summary")) == 1
    enrollment = one(engine, select(ENROLLMENTS).where(ENROLLMENTS.c.lead_id == lead_id))
    assert (enrollment["sequence_name"], enrollment["state"]) == ("whitepaper-nurture", "active")
    assert one(engine, select(SUBMISSIONS.c.status))["status"] == "processed"


def test_spirale_serve_runs_the_whole_loop(
    served: str, engine: Engine, signer: SendGridSigner, outbox_dir: Path
) -> None:
    response = httpx.post(f"{served}/forms/livre-blanc", json=FORM, timeout=10)
    assert response.status_code == 202
    lead_id = uuid.UUID(response.json()["lead_id"])

    # The event starts a served intake run, which enrolls the lead.
    enrollment = wait_for(
        "the intake run to enroll the lead",
        lambda: one(engine, select(ENROLLMENTS).where(ENROLLMENTS.c.lead_id == lead_id)),
    )
    assert enrollment["sequence_name"] == "whitepaper-nurture"
    # Only the served deployment's run: an earlier test ran the intake flow in-process.
    [run] = wait_for(
        "the intake run to complete",
        lambda: [r for r in _completed(flow_runs("intake")) if r.deployment_id is not None],
    )
    assert run.name.startswith("intake-livre-blanc-")

    # A moving clock: each step goes out at its due instant, not a minute before.
    welcome = send_next_step(engine, enrollment["id"], "welcome")
    check_in = send_next_step(engine, enrollment["id"], "check-in")
    assert check_in["sent_at"] - welcome["sent_at"] >= timedelta(days=1)
    local = check_in["sent_at"].replace(tzinfo=UTC).astimezone(PARIS)
    assert local.weekday() != 6 and 8 <= local.hour < 20
    assert (outbox_dir / "email" / f"{welcome['id']}.eml").exists()
    assert str(check_in["id"]) in (outbox_dir / "sms.jsonl").read_text(encoding="utf-8")

    engagement = one(engine, select(LEADS.c.engagement_score).where(LEADS.c.id == lead_id))[
        "engagement_score"
    ]
    click = [
        {
            "email": FORM["email"],
            "event": "click",
            "timestamp": int(utcnow().timestamp()),
            "sg_message_id": "sg-e2e-1.filter",
            "url": "https://spirale.example/livre-blanc",
            "outbox_id": str(welcome["id"]),
        }
    ]
    body = json_body(click)
    forged = signer.headers(body + b" ", int(time.time()))
    assert httpx.post(f"{served}/webhooks/sendgrid", content=body, headers=forged).status_code == 403
    signed = signer.headers(body, int(time.time()))
    assert httpx.post(f"{served}/webhooks/sendgrid", content=body, headers=signed).status_code < 300
    wait_for(
        "the click to score the lead up",
        lambda: (
            one(engine, select(LEADS.c.engagement_score).where(LEADS.c.id == lead_id))["engagement_score"]
            > engagement
        ),
    )

    stop = {
        "From": PHONE,
        "To": "+33700000000",
        "Body": "STOP",
        "MessageSid": "SMe2e1",
        "AccountSid": "ACe2e",
    }
    path = "/webhooks/twilio/inbound"
    bad = twilio_headers(path, stop, token="not-the-token")
    assert httpx.post(f"{served}{path}", data=stop, headers=bad).status_code == 403
    assert _state(engine, enrollment["id"]) == "active"
    assert httpx.post(f"{served}{path}", data=stop, headers=twilio_headers(path, stop)).status_code < 300
    wait_for("STOP to end the enrollment", lambda: _state(engine, enrollment["id"]) == "exited")
    with engine.connect() as conn:
        assert is_suppressed(conn, channel="sms", address=PHONE)

    # Whatever the API did not apply at once, the events flow does; nothing is left for it here.
    state = process_events(EventsParams(), return_state=True)
    assert sum(r.total for r in state.result()) == 0
    assert len(artifacts(flow_run_id(state), "events-summary")) == 1
    # The number is never texted again (the lead's email may still be nurtured elsewhere).
    later = dispatch(DispatchParams(now=welcome["sent_at"] + timedelta(days=30)))
    assert later.sent["sms"] == 0


def _completed(runs: list[FlowRun]) -> list[FlowRun]:
    return [r for r in runs if r.state is not None and r.state.is_completed()]


def _state(engine: Engine, enrollment_id: uuid.UUID) -> str:
    return str(one(engine, select(ENROLLMENTS.c.state).where(ENROLLMENTS.c.id == enrollment_id))["state"])
