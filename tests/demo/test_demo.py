"""``spirale demo`` end to end: a small run through the real flows under a Prefect server, its
summary and report, a continued run (``--keep``) and a fresh one."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from rich.console import Console
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from models.db import make_engine
from models.tables import Enrollment, FormSubmission, OutboxMessage
from spirale.cli import app
from spirale.demo.results import FUNNEL, Results
from spirale.demo.run import FIRST_DAY, DemoOptions, run_demo
from spirale.settings import Settings

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
SUBMISSIONS = FormSubmission.__table__  # type: ignore[attr-defined]
ENROLLMENTS = Enrollment.__table__  # type: ignore[attr-defined]


def play(options: DemoOptions) -> tuple[Results, str]:
    output = io.StringIO()
    results = run_demo(Settings(), options, Console(file=output, width=120))
    return results, output.getvalue()


def demo_engine(options: DemoOptions) -> Engine:
    return make_engine(f"sqlite:///{(options.folder / 'spirale.db').resolve()}")


def sent_ids(engine: Engine, channel: str) -> set[str]:
    with engine.connect() as conn:
        query = select(OUTBOX.c.id).where(OUTBOX.c.channel == channel, OUTBOX.c.state == "sent")
        return {str(value) for value in conn.execute(query).scalars()}


def eml_files(options: DemoOptions) -> set[str]:
    """The emails of the dispatcher (named by outbox id), not the owners' alerts (``notify-...``)."""
    return {
        path.stem for path in (options.folder / "outbox" / "email").glob("*.eml") if "notify" not in path.stem
    }


def demo_week_names() -> set[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["demo-week"])))
    return {run.name for run in runs}


def test_the_help_lists_every_option() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--leads", "--days", "--keep", "--folder", "--report", "--seed"):
        assert option in result.output


def test_a_small_demo_runs_through_the_flows_then_continues_and_starts_afresh(
    prefect_server: None, options: DemoOptions
) -> None:
    results, output = play(options)

    counts = dict(results.funnel)
    assert list(counts) == list(FUNNEL)
    values = list(counts.values())
    assert values == sorted(values, reverse=True), values
    assert counts["downloads"] > 100 and counts["qualified"] > 5
    # About nine in ten downloaders are off-target and screened out by the intake, with reasons.
    assert counts["qualified"] < counts["downloads"] * 0.3
    assert {"competitors", "academic", "countries"} <= set(results.off_target)

    engine = demo_engine(options)
    emails = sent_ids(engine, "email")
    assert results.sent["email"] == len(emails) > 50
    assert eml_files(options) == emails  # every email sent is in the outbox, once
    sms_file = options.folder / "outbox" / "sms.jsonl"
    sms_lines = [json.loads(line) for line in sms_file.read_text(encoding="utf-8").splitlines()]
    assert {line["outbox_id"] for line in sms_lines} >= sent_ids(engine, "sms")
    assert results.review is not None and results.review.experiment.name == "reactivation-offer/offer"
    assert sum(arm.n for arm in results.review.stats.arms) > 0
    assert results.deferred  # windows and the frequency cap at work
    assert set(results.deferred) <= {"window", "frequency_cap"}

    # One flow run per simulated week, under the names the Prefect UI shows.
    weeks = {f"demo-week-{FIRST_DAY + timedelta(weeks=n)}" for n in range(3)}
    assert weeks <= demo_week_names()

    page = (options.report / "index.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 4  # funnel, sends per day, golden spiral, A/B chart
    assert "Sends per day by channel" in page and "golden spiral" in page
    assert not re.search(r"""(src|href)=["']https?://""", page) and "<script" not in page
    assert "/outbox/email/" in page and "sms.jsonl" in page

    for heading in ("funnel", "Messages", "Deferred", "Suppressions", "Verdict", "Where to look next"):
        assert heading in output
    assert str(options.report / "index.html") in output


def test_keep_continues_the_database_and_a_new_run_starts_afresh(
    prefect_server: None, options: DemoOptions
) -> None:
    first = replace(options, days=3)
    play(first)
    engine = demo_engine(first)
    before = _count(engine, SUBMISSIONS)

    kept = replace(first, days=2, keep=True)
    results, _ = play(kept)
    assert results.start == FIRST_DAY + timedelta(days=3)
    assert _count(engine, SUBMISSIONS) > before
    assert f"demo-week-{FIRST_DAY + timedelta(days=3)}" in demo_week_names()

    fresh = replace(first, days=2)
    results, _ = play(fresh)
    engine = demo_engine(fresh)
    assert results.start == FIRST_DAY
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(SUBMISSIONS.c.received_at))).scalar_one()
        newest = conn.execute(select(func.max(SUBMISSIONS.c.received_at))).scalar_one()
    assert oldest.date() >= FIRST_DAY and newest.date() <= FIRST_DAY + timedelta(days=2)
    assert eml_files(fresh) == sent_ids(engine, "email")  # nothing left from the earlier runs


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["spirale.db", "outbox"])
def test_a_fresh_run_removes_the_previous_database_and_outbox(tmp_path: Path, name: str) -> None:
    from spirale.demo.preparation import prepare_folder

    folder = tmp_path / "demo"
    (folder / "outbox").mkdir(parents=True)
    (folder / "spirale.db").write_text("old", encoding="utf-8")
    (folder / "prefect.db").write_text("history", encoding="utf-8")
    assert prepare_folder(folder, keep=True) is True
    assert (folder / name).exists()
    assert prepare_folder(folder, keep=False) is False
    assert not (folder / name).exists()
    assert (folder / "prefect.db").exists()  # the flow-run history stays
