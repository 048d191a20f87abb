"""One tick run by several dispatcher processes, each on its own shard: every due step is sent
once, by the process whose shard holds its enrollment, through the real local outbox channel."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from channels.base import AnyChannel as DeliveryChannel
from channels.registry import build_channels
from models.claims import Shard, shard_of
from models.tables import Enrollment, OutboxMessage
from spirale.dispatch.parallel import default_processes, dispatch_in_processes, split_shard
from spirale.settings import Settings
from tests.dispatch.conftest import FIXTURES, MONDAY_9H, Enroll, MakeLeads

pytestmark = pytest.mark.db

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
ENROLLMENTS = Enrollment.__table__  # type: ignore[attr-defined]


def process_settings(database_url: str, outbox: Path) -> Settings:
    return Settings(
        database_url=database_url,
        sequences_dir=FIXTURES,
        outbox_dir=outbox,
        email_channel="local-outbox",
        sms_channel="local-outbox",
        public_url="https://spirale.example",
        secret_key="test-secret",  # type: ignore[arg-type]
        dispatch_batch_size=40,
    )


def test_two_processes_send_every_due_step_exactly_once(
    database_url: str, engine: Engine, tmp_path: Path, make_leads: MakeLeads, enroll: Enroll
) -> None:
    leads = make_leads(240)
    assert enroll(leads, "drip") == 240
    settings = process_settings(database_url, tmp_path / "outbox")

    report = dispatch_in_processes(settings, now=MONDAY_9H, processes=2)
    # A second tick at the same instant finds nothing left to send.
    again = dispatch_in_processes(settings, now=MONDAY_9H, processes=2)

    assert report.claimed == 240 and report.sent["email"] == 240, report.summary()
    assert report.batches >= 240 // 40  # each process worked in batches of its own
    assert again.claimed == 0 and again.total_sent == 0
    with engine.connect() as conn:
        rows = conn.execute(
            select(OUTBOX.c.id, OUTBOX.c.enrollment_id, OUTBOX.c.state, OUTBOX.c.lead_id)
        ).all()
    assert Counter(row.state for row in rows) == {"sent": 240}
    assert len({row.enrollment_id for row in rows}) == 240
    files = sorted(p.stem for p in (tmp_path / "outbox" / "email").glob("*.eml"))
    assert files == sorted(str(row.id) for row in rows)
    shards = Counter(shard_of(row.lead_id, 2) for row in rows)
    assert set(shards) == {0, 1} and min(shards.values()) > 40  # both shards had a real share


def test_three_processes_append_sms_lines_without_losing_one(
    database_url: str, engine: Engine, tmp_path: Path, make_leads: MakeLeads, enroll: Enroll
) -> None:
    """The second step is an SMS, written by three processes to one JSON-lines file; every claim
    is released by the write that advanced it."""
    leads = make_leads(120)
    enroll(leads, "drip")
    settings = process_settings(database_url, tmp_path / "outbox")
    first = dispatch_in_processes(settings, now=MONDAY_9H, processes=3)
    assert first.sent["email"] == 120
    later = MONDAY_9H + timedelta(days=2)  # the SMS step is due, inside the SMS window
    second = dispatch_in_processes(settings, now=later, processes=3)
    assert second.sent["sms"] == 120, second.summary()
    lines = (tmp_path / "outbox" / "sms.jsonl").read_text().splitlines()
    assert len(lines) == 120  # appended by three processes, none lost or doubled
    outbox_ids = {json.loads(line)["outbox_id"] for line in lines}
    with engine.connect() as conn:
        sms_rows = conn.execute(select(OUTBOX.c.id).where(OUTBOX.c.channel == "sms")).scalars().all()
        held = conn.execute(
            select(ENROLLMENTS.c.claimed_by).where(ENROLLMENTS.c.claimed_by.is_not(None))
        ).all()
    assert outbox_ids == {str(row_id) for row_id in sms_rows}
    assert held == []  # every claim was released by the write that advanced it


def outbox_from_environment(settings: Settings) -> Mapping[str, DeliveryChannel]:
    """Local outbox channels in the directory ``TEST_OUTBOX_DIR`` names (read in the process)."""
    return build_channels(settings.model_copy(update={"outbox_dir": Path(os.environ["TEST_OUTBOX_DIR"])}))


def test_processes_work_in_the_callers_directory_and_environment_of_the_moment(
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    make_leads: MakeLeads,
    enroll: Enroll,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The processes are forked from a server started once: a relative outbox directory lands under
    the caller's working directory of this tick, and they see the environment of this tick, not
    those of the moment that server started."""
    settings = process_settings(database_url, Path("relative-outbox"))
    first, here = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    here.mkdir()
    monkeypatch.chdir(first)
    monkeypatch.setenv("TEST_OUTBOX_DIR", "from-the-first-tick")
    dispatch_in_processes(settings, now=MONDAY_9H, processes=2)  # starts the server if needed
    leads = make_leads(30)
    enroll(leads, "drip")
    monkeypatch.chdir(here)
    monkeypatch.setenv("TEST_OUTBOX_DIR", "from-the-environment")

    relative = dispatch_in_processes(settings, now=MONDAY_9H, processes=2)
    enroll(make_leads(20), "drip")
    from_env = dispatch_in_processes(settings, now=MONDAY_9H, processes=2, channels=outbox_from_environment)

    assert relative.sent["email"] == 30 and from_env.sent["email"] == 20
    assert len(list((here / "relative-outbox" / "email").glob("*.eml"))) == 30
    assert len(list((here / "from-the-environment" / "email").glob("*.eml"))) == 20
    assert not (first / "from-the-first-tick").exists()


def test_one_process_runs_in_place_and_bad_counts_are_refused(
    database_url: str, tmp_path: Path, make_leads: MakeLeads, enroll: Enroll
) -> None:
    enroll(make_leads(10), "drip")
    settings = process_settings(database_url, tmp_path / "outbox")
    report = dispatch_in_processes(settings, now=MONDAY_9H, processes=1)
    assert report.sent["email"] == 10
    with pytest.raises(ValueError, match="processes must be at least 1, got 0"):
        dispatch_in_processes(settings, now=MONDAY_9H, processes=0)
    assert default_processes() >= 1


def test_shard_of_spreads_ids_evenly() -> None:
    counts = Counter(shard_of(uuid.uuid4(), 2) for _ in range(4000))
    assert abs(counts[0] - counts[1]) < 400


def test_processes_of_a_shard_split_exactly_that_shard() -> None:
    within = Shard(1, 3)
    parts = split_shard(2, within)
    assert parts == [Shard(1, 6), Shard(4, 6)]
    for _ in range(2000):
        lead = uuid.uuid4()
        owners = [part for part in parts if shard_of(lead, part.count) == part.index]
        # An id of the shard belongs to exactly one of its processes; any other id to none.
        assert len(owners) == (1 if shard_of(lead, 3) == 1 else 0)
    assert split_shard(3) == [Shard(0, 3), Shard(1, 3), Shard(2, 3)]
