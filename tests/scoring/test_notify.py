"""Owners hear about a hot lead once per task and channel, even when intake or the event
processor runs again or twice at the same time; a failed notification is recorded, not retried."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from channels.base import EmailMessage, Message
from scoring.notify import NOTIFICATION_EVENT, notify_pending, notify_tasks
from scoring.routing import route_moves
from scoring.rules import ScoringRules
from scoring.status import StatusMove
from scoring.team import Team
from sequences.catalog import SequenceCatalog
from spirale.errors import PermanentSendError
from spirale.settings import Settings
from tests.fakes.recording import RecordingChannel, recording_channels
from tests.scoring.conftest import MakeLead
from tests.scoring.helpers import EVENTS, MONDAY_10H

pytestmark = pytest.mark.db


def hot_tasks(
    engine: Engine, rules: ScoringRules, catalog: SequenceCatalog, team: Team, make_lead: MakeLead, n: int
) -> list[uuid.UUID]:
    leads = [make_lead(status="hot", fit_score=60.0, attributes={"postcode": "75011"}) for _ in range(n)]
    with engine.begin() as conn:
        moves = [StatusMove(lead_id, "warm", "hot", "test") for lead_id in leads]
        return route_moves(
            conn, moves=moves, now=MONDAY_10H, rules=rules, catalog=catalog, team=team
        ).task_ids


def test_each_task_is_notified_once_per_channel_even_when_run_again_or_concurrently(
    engine: Engine,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    team: Team,
    settings: Settings,
    make_lead: MakeLead,
) -> None:
    task_ids = hot_tasks(engine, rules, catalog, team, make_lead, 5)
    channels = recording_channels()

    def run() -> None:
        notify_tasks(
            engine,
            task_ids=task_ids,
            now=MONDAY_10H,
            settings=settings,
            rules=rules,
            team=team,
            channels=channels,
        )

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run()
    assert len(channels["email"].sent) == 5 and len(channels["sms"].sent) == 5
    assert {m.to for m in channels["email"].sent} == {"alice.martin@spirale.example"}  # Paris: Alice
    first = channels["email"].sent[0]
    assert isinstance(first, EmailMessage)
    assert (
        first.subject.startswith("Prospect chaud : Camille Martin (Atelier)")
        and "spirale task done" in first.text
    )
    with engine.connect() as conn:
        states = (
            conn.execute(select(EVENTS.c.payload).where(EVENTS.c.type == NOTIFICATION_EVENT)).scalars().all()
        )
    assert len(states) == 10 and {p["state"] for p in states} == {"sent"}


def test_a_failed_notification_is_recorded_and_not_sent_again(
    engine: Engine,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    team: Team,
    settings: Settings,
    make_lead: MakeLead,
) -> None:
    task_ids = hot_tasks(engine, rules, catalog, team, make_lead, 1)

    def refuse(message: Message) -> PermanentSendError:
        return PermanentSendError("mailbox full", channel="email")

    channels: dict[str, RecordingChannel] = {
        **recording_channels(),
        "email": recording_channels(refuse)["email"],
    }
    report = notify_tasks(
        engine,
        task_ids=task_ids,
        now=MONDAY_10H,
        settings=settings,
        rules=rules,
        team=team,
        channels=channels,
    )
    assert report.failed == {"email": 1} and report.sent == {"sms": 1}
    again = notify_tasks(
        engine,
        task_ids=task_ids,
        now=MONDAY_10H,
        settings=settings,
        rules=rules,
        team=team,
        channels=channels,
    )
    assert again.skipped == {"already notified": 2} and channels["email"].attempts == 1
    with engine.connect() as conn:
        payloads = (
            conn.execute(select(EVENTS.c.payload).where(EVENTS.c.type == NOTIFICATION_EVENT)).scalars().all()
        )
    failed = next(p for p in payloads if p["channel"] == "email")
    assert failed["state"] == "failed" and "mailbox full" in failed["error"]


def test_the_sweep_notifies_what_a_caller_routed_without_notifying(
    engine: Engine,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    team: Team,
    settings: Settings,
    make_lead: MakeLead,
) -> None:
    task_ids = hot_tasks(engine, rules, catalog, team, make_lead, 2)
    channels = recording_channels()
    notify_tasks(
        engine,
        task_ids=task_ids[:1],
        now=MONDAY_10H,
        settings=settings,
        rules=rules,
        team=team,
        channels=channels,
    )
    report = notify_pending(
        engine, now=MONDAY_10H, settings=settings, rules=rules, team=team, catalog=catalog, channels=channels
    )
    assert report.sent == {"email": 1, "sms": 1} and not report.skipped
    assert len(channels["email"].sent) == 2
    later = notify_pending(
        engine, now=MONDAY_10H, settings=settings, rules=rules, team=team, catalog=catalog, channels=channels
    )
    assert later.sent == {} and len(channels["email"].sent) == 2
    too_late = MONDAY_10H + timedelta(days=3)
    assert (
        notify_pending(engine, now=too_late, settings=settings, rules=rules, team=team, catalog=catalog).sent
        == {}
    )
