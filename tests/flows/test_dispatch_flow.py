"""The dispatch flow under a real Prefect server: due steps reach the local outbox exactly once,
in a handful of task runs, and the tick's report is published as a table artifact."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from flows.dispatch import dispatch
from flows.params import DispatchParams
from models.claims import shard_of
from models.tables import Enrollment, OutboxMessage
from sequences.catalog import SequenceCatalog
from spirale.enrollment import enroll_leads
from spirale.settings import Settings
from tests.flows.conftest import FIXTURE_LIBRARY, MakeLeads
from tests.flows.prefect_api import artifacts, flow_run_id, read_flow_run, task_runs

pytestmark = pytest.mark.db
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
ENROLLMENTS = Enrollment.__table__  # type: ignore[attr-defined]
MONDAY_9H = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 in Paris


def outbox_files(outbox_dir: Path) -> tuple[set[str], list[str]]:
    """Outbox ids of the emails written, and of the SMS lines (a list: duplicates would show)."""
    emails = {p.stem for p in (outbox_dir / "email").glob("*.eml")}
    sms_file = outbox_dir / "sms.jsonl"
    lines = sms_file.read_text(encoding="utf-8").splitlines() if sms_file.exists() else []
    return emails, [json.loads(line)["outbox_id"] for line in lines]


def enroll_in_drip(engine: Engine, leads: list[uuid.UUID]) -> None:
    """Enroll ``leads`` in the fixture ``drip`` sequence, first step due on Monday 09:00."""
    catalog = SequenceCatalog.open(FIXTURE_LIBRARY)
    with engine.begin() as conn:
        enroll_leads(
            conn, lead_ids=leads, sequence=catalog.get("drip"), version=catalog.version("drip"), now=MONDAY_9H
        )


def test_ticks_send_each_due_step_once_in_a_few_task_runs(
    spirale_env: Callable[..., Settings], engine: Engine, make_leads: MakeLeads, outbox_dir: Path
) -> None:
    spirale_env(SPIRALE_DISPATCH_BATCH_SIZE="10")
    enroll_in_drip(engine, make_leads(120, now=MONDAY_9H))
    params = DispatchParams(now=MONDAY_9H, steps_per_task=50)
    state = dispatch(params, return_state=True)
    first = state.result()
    assert first.sent == {"email": 120} and first.batches == 12

    run_id = flow_run_id(state)
    assert read_flow_run(run_id).name == "dispatch-2026-12-07T08:00"
    # Recovery, three batch tasks (50 + 50 + 20 steps) and the count that sizes the progress bar:
    # five task runs for 120 messages, not one per message.
    runs = task_runs(run_id, at_least=5)
    assert len(runs) == 5
    assert {r.name for r in runs if r.name.startswith("dispatch-batches")} == {
        "dispatch-batches-1",
        "dispatch-batches-2",
        "dispatch-batches-3",
    }
    assert all(r.state is not None and r.state.is_completed() for r in runs)
    table = artifacts(run_id, "dispatch-summary")
    assert len(table) == 1
    rows = json.loads(str(table[0].data))
    assert {"outcome": "sent", "key": "email", "count": 120} in rows
    assert {"outcome": "claimed", "key": "", "count": 120} in rows
    assert len(artifacts(run_id, "dispatch-progress")) == 1

    # The same instant again sends nothing; the clock moves on and the SMS step goes out once.
    assert dispatch(params).total_sent == 0
    later = dispatch(DispatchParams(now=MONDAY_9H + timedelta(days=1, hours=1)))
    assert later.sent == {"sms": 120}
    emails, sms = outbox_files(outbox_dir)
    with engine.connect() as conn:
        rows_by_channel = Counter(
            (channel, state) for channel, state in conn.execute(select(OUTBOX.c.channel, OUTBOX.c.state))
        )
        ids = {str(i) for (i,) in conn.execute(select(OUTBOX.c.id))}
    assert rows_by_channel == {("email", "sent"): 120, ("sms", "sent"): 120}
    assert len(emails) == 120 and len(sms) == len(set(sms)) == 120
    assert emails | set(sms) == ids


def test_a_tick_with_two_processes_sends_each_due_step_once(
    spirale_env: Callable[..., Settings], engine: Engine, make_leads: MakeLeads, outbox_dir: Path
) -> None:
    spirale_env(SPIRALE_DISPATCH_BATCH_SIZE="10")
    enroll_in_drip(engine, make_leads(150, now=MONDAY_9H))
    state = dispatch(DispatchParams(now=MONDAY_9H, steps_per_task=40, processes=2), return_state=True)
    report = state.result()
    assert report.sent == {"email": 150}, report.summary()

    run_id = flow_run_id(state)
    # Each task runs two processes of up to 40 steps (4 batches of 10), one per half of the
    # enrollments (by lead). The tick goes on while a process stopped at its limit on a full batch,
    # so a process with n due steps is done in task n // 40 + 1 (at a multiple of 40, that task
    # finds nothing left).
    with engine.connect() as conn:
        lead_of_enrollment = conn.execute(select(ENROLLMENTS.c.lead_id)).scalars().all()
    per_process = Counter(shard_of(lead, 2) for lead in lead_of_enrollment)
    tasks = max(per_process.values()) // 40 + 1
    names = sorted(r.name for r in task_runs(run_id, at_least=2 + tasks) if r.name.startswith("dispatch-"))
    assert names == [f"dispatch-processes-{part}" for part in range(1, tasks + 1)]
    emails, _ = outbox_files(outbox_dir)
    with engine.connect() as conn:
        ids = {str(i) for (i,) in conn.execute(select(OUTBOX.c.id))}
    assert emails == ids and len(ids) == 150
    assert dispatch(DispatchParams(now=MONDAY_9H, processes=2)).total_sent == 0


def test_too_many_ways_to_split_is_refused() -> None:
    with pytest.raises(ValueError, match="splits the due steps 320 ways; at most 256"):
        DispatchParams(shard=0, shards=5, processes=64)
