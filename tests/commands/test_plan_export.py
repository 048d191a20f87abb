"""The action plan: projected from a real database, written as a workbook, read back with openpyxl."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import Result
from sqlalchemy import Engine, Table
from typer.testing import CliRunner

from models.suppressions import suppress
from models.tables import Enrollment, Lead, SalesTask
from sequences.catalog import SequenceCatalog
from sequences.variants import HOLDOUT, assign_variant
from spirale.action_plan import ActionPlan, Costs, build_action_plan
from spirale.cli import app
from spirale.enrollment import enroll_leads
from spirale.plan_workbook import EURO, write_workbook
from spirale.settings import get_settings

pytestmark = pytest.mark.db
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
TASKS: Table = SalesTask.__table__  # type: ignore[attr-defined]
# Monday 2027-01-04, 09:00 in Paris.
START = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
COSTS = Costs(email=0.01, sms=0.1, call=3.0)
runner = CliRunner()

LIBRARY = {
    "weekly": """\
name: weekly
spacing: {fixed: 7d}
windows: {email: anytime, sms: anytime}
steps:
  - {id: one, channel: email, template: hello, subject: "Un", wait: 0}
  - {id: two, channel: sms, text: "Deux, de Spirale. STOP au 36180", if: "lead.consent.sms"}
  - {id: three, channel: email, template: hello, subject: "Trois"}
""",
    "cadence": """\
name: cadence
spacing: {fixed: 7d}
windows: {email: anytime, call: anytime, linkedin: anytime}
steps:
  - {id: call, channel: call, note: "Appeler {{ lead.first_name }}", wait: 0}
  - {id: inmail, channel: linkedin, note: "InMail"}
  - {id: recap, channel: email, template: hello, subject: "Suite"}
""",
    "monthly": """\
name: monthly
windows: {email: anytime}
repeat: {every: P1M, times: 3}
steps:
  - {id: news, channel: email, template: hello, subject: "Nouvelles", wait: 0}
""",
    "promo": """\
name: promo
windows: {email: anytime}
steps:
  - id: offer
    channel: email
    wait: 0
    variants: [{id: gift, weight: 50, template: hello, subject: "Cadeau"}]
    holdout: 50
""",
}


@pytest.fixture
def sequences_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sequences"
    (root / "library").mkdir(parents=True)
    (root / "templates").mkdir()
    for name, text in LIBRARY.items():
        (root / "library" / f"{name}.yaml").write_text(text, encoding="utf-8")
    (root / "templates" / "hello.html.j2").write_text(
        '<p>Bonjour {{ lead.first_name }}</p><a href="{{ unsubscribe_url }}">stop</a>', encoding="utf-8"
    )
    return root


def lead(index: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid.UUID(int=index + 1),
        "email": f"lead{index}@example.fr",
        "phone": f"+336120000{index:02d}",
        "first_name": f"Lead{index}",
        "timezone": "Europe/Paris",
        "country": "FR",
        "consent_email": True,
        "consent_sms": True,
        "status": "warm",
        "owner": "alice",
        "attributes": {},
        "created_at": START,
        "updated_at": START,
    }
    row.update(overrides)
    return row


@pytest.fixture
def catalog(sequences_dir: Path) -> SequenceCatalog:
    return SequenceCatalog.open(sequences_dir)


@pytest.fixture
def populated(engine: Engine, catalog: SequenceCatalog) -> dict[str, list[uuid.UUID]]:
    groups = {
        "weekly": [lead(1), lead(2), lead(3), lead(4, consent_sms=False), lead(5)],
        "cadence": [lead(6, owner="bruno"), lead(7, owner=None)],
        "monthly": [lead(8)],
        "promo": [lead(20 + i) for i in range(20)],
        "exited": [lead(9)],
    }
    with engine.begin() as conn:
        conn.execute(LEADS.insert(), [row for rows in groups.values() for row in rows])
        suppress(
            conn, channel="email", address="lead5@example.fr", reason="unsubscribe", source="t", now=START
        )
        for name in LIBRARY:
            ids = [row["id"] for row in groups[name]]
            enroll_leads(conn, lead_ids=ids, sequence=catalog.get(name), version="v1", now=START)
        enroll_leads(conn, lead_ids=[lead(9)["id"]], sequence=catalog.get("weekly"), version="v1", now=START)
        conn.execute(
            ENROLLMENTS.update().where(ENROLLMENTS.c.lead_id == lead(9)["id"]).values(state="exited")
        )
        conn.execute(ENROLLMENTS.insert(), [ghost_enrollment(lead(1)["id"])])
        conn.execute(
            TASKS.insert(),
            [task(lead(1)["id"], START - timedelta(days=2)), task(lead(2)["id"], START + timedelta(days=15))],
        )
    return {name: [row["id"] for row in rows] for name, rows in groups.items()}


def ghost_enrollment(lead_id: uuid.UUID) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "lead_id": lead_id,
        "sequence_name": "ghost",
        "sequence_version": "v0",
        "step_index": 0,
        "cycle": 0,
        "state": "active",
        "next_due_at": START,
        "enrolled_at": START,
        "updated_at": START,
    }


def task(lead_id: uuid.UUID, due_at: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "lead_id": lead_id,
        "kind": "call",
        "owner": "alice",
        "note": "",
        "state": "open",
        "due_at": due_at,
        "created_at": START,
        "cycle": 0,
    }


def build(engine: Engine, catalog: SequenceCatalog, weeks: int = 52) -> ActionPlan:
    with engine.connect() as conn:
        return build_action_plan(conn, catalog=catalog, start=START, weeks=weeks, costs=COSTS)


def rows_of(plan: ActionPlan) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (line.week, line.sequence, line.owner): {
            **{k: v for k, v in line.counts.items() if v},
            "leads": len(line.leads),
            "budget": line.budget(COSTS),
        }
        for line in plan.lines
    }


def test_sends_are_projected_week_by_week_as_the_dispatcher_would_send_them(
    engine: Engine, catalog: SequenceCatalog, populated: dict[str, list[uuid.UUID]]
) -> None:
    rows = rows_of(build(engine, catalog))
    weekly = {week: rows[(week, "weekly", "marketing")] for week in ("2027-W01", "2027-W02", "2027-W03")}
    # lead5's email is suppressed; lead4 has no SMS consent, so the SMS step's condition is false.
    assert weekly == {
        "2027-W01": {"email": 4, "leads": 4, "budget": 0.04},
        "2027-W02": {"sms": 4, "sms_segments": 4, "leads": 4, "budget": 0.4},
        "2027-W03": {"email": 4, "leads": 4, "budget": 0.04},
    }
    assert [key for key in rows if key[1] == "monthly"] == [
        ("2027-W01", "monthly", "marketing"),
        ("2027-W05", "monthly", "marketing"),  # Thursday 4 February
        ("2027-W09", "monthly", "marketing"),  # Thursday 4 March; times: 3 ends the policy
    ]


def test_sales_led_sequences_belong_to_each_leads_owner(
    engine: Engine, catalog: SequenceCatalog, populated: dict[str, list[uuid.UUID]]
) -> None:
    plan = build(engine, catalog)
    rows = rows_of(plan)
    assert rows[("2027-W01", "cadence", "bruno")] == {"call": 1, "leads": 1, "budget": 3.0}
    assert rows[("2027-W01", "cadence", "(unassigned)")] == {"call": 1, "leads": 1, "budget": 3.0}
    assert rows[("2027-W02", "cadence", "bruno")] == {"linkedin": 1, "leads": 1, "budget": 0.0}
    assert rows[("2027-W03", "cadence", "bruno")] == {"email": 1, "leads": 1, "budget": 0.01}
    tasks = {(t.week, t.owner): (t.open_tasks, t.overdue, dict(t.planned)) for t in plan.tasks}
    assert tasks == {
        ("2027-W01", "alice"): (1, 1, {}),
        ("2027-W03", "alice"): (1, 0, {}),
        ("2027-W01", "bruno"): (0, 0, {"call": 1}),
        ("2027-W02", "bruno"): (0, 0, {"linkedin": 1}),
        ("2027-W01", "(unassigned)"): (0, 0, {"call": 1}),
        ("2027-W02", "(unassigned)"): (0, 0, {"linkedin": 1}),
    }


def test_the_holdout_receives_nothing_and_unknown_sequences_are_reported(
    engine: Engine, catalog: SequenceCatalog, populated: dict[str, list[uuid.UUID]]
) -> None:
    plan = build(engine, catalog)
    step = catalog.get("promo").steps[0]
    arms = [assign_variant(step, lead_key=str(i), sequence_name="promo") for i in populated["promo"]]
    assert 0 < arms.count(HOLDOUT) < 20
    assert rows_of(plan)[("2027-W01", "promo", "marketing")]["email"] == 20 - arms.count(HOLDOUT)
    assert plan.warnings == [
        "1 active enrollments in sequence 'ghost', which is not in the library: not planned"
    ]


def test_the_horizon_bounds_the_plan(
    engine: Engine, catalog: SequenceCatalog, populated: dict[str, list[uuid.UUID]]
) -> None:
    plan = build(engine, catalog, weeks=2)
    assert {line.week for line in plan.lines} == {"2027-W01", "2027-W02"}
    assert {task.week for task in plan.tasks} == {"2027-W01", "2027-W02"}


def test_the_workbook_has_typed_cells_frozen_headers_and_filters(
    engine: Engine, catalog: SequenceCatalog, populated: dict[str, list[uuid.UUID]], tmp_path: Path
) -> None:
    path = tmp_path / "out" / "plan.xlsx"
    write_workbook(build(engine, catalog), path, generated_at=START)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Plan", "Sales tasks", "Summary"]

    plan = book["Plan"]
    header = [cell.value for cell in plan[1]]
    assert header[:4] == ["Week", "Week start", "Sequence", "Owner"] and header[-1] == "Budget"
    first = {name: cell for name, cell in zip(header, plan[2], strict=True)}
    assert first["Week"].value == "2027-W01"
    assert first["Week start"].is_date and first["Week start"].value == datetime(2027, 1, 4)
    assert first["Week start"].number_format == "yyyy-mm-dd"
    assert isinstance(first["Emails"].value, int) and first["Emails"].data_type == "n"
    assert first["Budget"].data_type == "n" and first["Budget"].number_format == EURO
    assert first["Budget"].value == 3  # cadence's first call (Excel stores 3.0 as 3)
    assert plan.freeze_panes == "A2"
    assert plan.auto_filter.ref == f"A1:L{plan.max_row}"
    assert plan.column_dimensions["C"].width >= len("Sequence") + 2

    rows = [dict(zip(header, r, strict=True)) for r in plan.iter_rows(min_row=2, values_only=True)]
    weekly = [r for r in rows if r["Sequence"] == "weekly"]
    assert [(r["Week"], r["Emails"], r["SMS"], r["Budget"]) for r in weekly] == [
        ("2027-W01", 4, 0, 0.04),
        ("2027-W02", 0, 4, 0.4),
        ("2027-W03", 4, 0, 0.04),
    ]

    tasks = book["Sales tasks"]
    task_header = [cell.value for cell in tasks[1]]
    alice = [dict(zip(task_header, r, strict=True)) for r in tasks.iter_rows(min_row=2, values_only=True)]
    assert {
        (r["Week"], r["Owner"], r["Open tasks"], r["of which overdue"])
        for r in alice
        if r["Owner"] == "alice"
    } == {
        ("2027-W01", "alice", 1, 1),
        ("2027-W03", "alice", 1, 0),
    }
    assert tasks.freeze_panes == "A2"

    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(min_row=2, values_only=True) if r[0] != "Note"}
    assert summary["Cost per call"] == 3.0
    assert summary["Total calls"] == 2
    assert summary["Warning"].startswith("1 active enrollments in sequence 'ghost'")


@pytest.fixture
def cli_env(database_url: str, sequences_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPIRALE_DATABASE_URL", database_url)
    monkeypatch.setenv("SPIRALE_SEQUENCES_DIR", str(sequences_dir))
    monkeypatch.setenv("SPIRALE_COST_CALL", "3")
    monkeypatch.setenv("SPIRALE_SECRET_KEY", "plan-export-secret-0123456789")
    monkeypatch.setenv("SPIRALE_SENDGRID_API_KEY", "SG.plan-export-api-key")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def export(*args: str) -> Result:
    return runner.invoke(app, ["plan", "export", *args], env={"COLUMNS": "200"})


def test_the_command_writes_the_workbook_and_sums_it_up(
    cli_env: None, populated: dict[str, list[uuid.UUID]], tmp_path: Path
) -> None:
    path = tmp_path / "plan.xlsx"
    result = export("--out", str(path), "--weeks", "4", "--start", "2027-01-04T08:00:00Z")
    assert result.exit_code == 0, result.output
    assert "4 weeks from 2027-01-04:" in result.stdout
    assert f"wrote {path}" in result.stdout
    assert "warning: 1 active enrollments in sequence 'ghost'" in result.stderr
    cells = [
        str(value)
        for sheet in openpyxl.load_workbook(path).worksheets
        for row in sheet.iter_rows(values_only=True)
        for value in row
    ]
    assert "bruno" in cells
    assert not any("plan-export-secret" in c or "SG.plan-export" in c for c in cells)
    assert "plan-export-secret" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--out", "plan.csv"), "name it *.xlsx"),
        (("--out", "plan.xlsx", "--start", "lundi"), "is not an ISO 8601 date"),
        (("--out", "plan.xlsx", "--weeks", "0"), "--weeks"),
    ],
)
def test_usage_errors(cli_env: None, args: tuple[str, ...], message: str) -> None:
    result = export(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_the_timeline_stays_the_default_of_plan(cli_env: None, sequences_dir: Path) -> None:
    result = runner.invoke(app, ["plan", "weekly", "--start", "2027-01-04T09:00", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"sequence": "weekly"' in result.stdout
