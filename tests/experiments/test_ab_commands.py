"""``spirale ab report|stats|promote`` and ``spirale conversions import`` through the real CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from models.tables import VariantAssignment
from scoring.ab_stats import analyze, parse_counts
from scoring.conversions import record_conversion
from sequences.catalog import SequenceCatalog
from spirale.cli import app
from spirale.dispatch import Dispatcher
from spirale.enrollment import enroll_leads
from spirale.settings import get_settings
from tests.experiments.conftest import EVENTS, SEQUENCES_DIR, T0, MakeLeads

runner = CliRunner()
ASSIGNMENTS = VariantAssignment.__table__  # type: ignore[attr-defined]
COUNTS = {
    "holdout": {"n": 1000, "conversions": 30},
    "discount": {"n": 1000, "conversions": 45},
    "audit": {"n": 1000, "conversions": 33},
}
REVIEW_AT = (T0 + timedelta(days=40)).isoformat()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_stats_json_is_exactly_the_documented_shape(tmp_path: Path) -> None:
    path = tmp_path / "counts.json"
    path.write_text(json.dumps(COUNTS), encoding="utf-8")
    result = invoke("ab", "stats", "--counts", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload == json.loads(json.dumps(analyze(parse_counts(COUNTS)).to_json()))
    assert list(payload) == ["holdout", "enough_data", "recommendation", "variants"]
    assert [v["id"] for v in payload["variants"]] == ["holdout", "discount", "audit"]
    assert payload["holdout"] == "holdout" and payload["enough_data"] is False
    assert payload["variants"][0]["lift_abs"] is None and payload["variants"][0]["p_value"] is None
    assert payload["variants"][1]["ci"] == pytest.approx([0.0337995, 0.0596828], abs=1e-6)
    assert "not enough data yet: need about 1500 more per arm" in payload["recommendation"]


def test_stats_table_shows_intervals_guard_and_advice(tmp_path: Path) -> None:
    path = tmp_path / "counts.json"
    path.write_text(json.dumps(COUNTS), encoding="utf-8")
    result = invoke("ab", "stats", "--counts", str(path), "--format", "table")
    assert result.exit_code == 0, result.output
    discount = next(line for line in result.stdout.splitlines() if "discount" in line)
    assert "4.5%" in discount and "3.4% – 6.0%" in discount and "+1.5 pts" in discount and "+50%" in discount
    assert "Sample guard: not enough data yet: need about 1500 more per arm" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"holdout": {"conversions": 3}, "a": {"n": 10, "conversions": 1}}', "holdout: missing 'n'"),
        ('{"holdout": {"n": 10, "conversions": 12}, "a": {"n": 10, "conversions": 1}}', "exceed n"),
        (
            '{"holdout": {"n": 10, "conversions": -1}, "a": {"n": 10, "conversions": 1}}',
            "must not be negative",
        ),
        ('{"holdout": ', "invalid JSON at line 1"),
    ],
)
def test_bad_counts_exit_1_with_a_message_and_no_traceback(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "counts.json"
    path.write_text(content, encoding="utf-8")
    result = invoke("ab", "stats", "--counts", str(path))
    assert result.exit_code == 1
    assert message in result.stderr and "error:" in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_missing_counts_file_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("ab", "stats", "--counts", str(tmp_path / "absent.json"))
    assert result.exit_code == 1 and "cannot read" in result.stderr and "Traceback" not in result.output


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("SPIRALE_DATABASE_URL", database_url)
    monkeypatch.setenv("SPIRALE_SEQUENCES_DIR", str(SEQUENCES_DIR))
    monkeypatch.setenv("SPIRALE_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def campaign(
    engine: Engine, catalog: SequenceCatalog, dispatcher: Dispatcher, make_leads: MakeLeads
) -> dict[str, str]:
    """300 leads sent the offer at T0, a few conversions afterwards; returns lead id -> arm."""
    leads = make_leads(300)
    with engine.begin() as conn:
        enroll_leads(conn, lead_ids=leads, sequence=catalog.get("reactivation-offer"), version="v1", now=T0)
    dispatcher.dispatch_due(now=T0)
    with engine.begin() as conn:
        arms = {
            str(lead): arm for lead, arm in conn.execute(select(ASSIGNMENTS.c.lead_id, ASSIGNMENTS.c.variant))
        }
        for lead in leads[:12]:
            record_conversion(
                conn, lead_id=lead, occurred_at=T0 + timedelta(days=3), value=100.0, source="shop"
            )
    return arms


@pytest.mark.db
@pytest.mark.usefixtures("cli_env")
def test_report_json_names_the_experiment_and_every_arm(campaign: dict[str, str]) -> None:
    result = invoke("ab", "report", "reactivation-offer", "--format", "json", "--now", REVIEW_AT)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["experiment"] == "reactivation-offer/offer" and payload["metric"] == "conversions"
    assert [v["id"] for v in payload["variants"]] == ["holdout", "remise", "audit-offert"]
    assert sum(v["n"] for v in payload["variants"]) == 300
    assert sum(v["conversions"] for v in payload["variants"]) == 12
    by_arm = {v["id"]: v for v in payload["variants"]}
    assert by_arm["holdout"]["funnel"]["sent"] == 0
    assert (
        by_arm["remise"]["funnel"]["sent"] == by_arm["remise"]["n"] == list(campaign.values()).count("remise")
    )
    assert payload["enough_data"] is False and payload["recommendation"].startswith("Keep the test running")
    assert payload["promotions"] == [] and payload["open_windows"] == 0


@pytest.mark.db
@pytest.mark.usefixtures("cli_env", "campaign")
def test_report_html_is_self_contained_with_an_svg_chart(tmp_path: Path) -> None:
    out = tmp_path / "review.html"
    result = invoke(
        "ab", "report", "reactivation-offer/offer", "--format", "html", "--out", str(out), "--now", REVIEW_AT
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</svg>" in page
    assert page.count("<circle") == 3  # one rate per arm
    assert "<script" not in page and not re.search(r"\b(src|href)=", page)
    assert re.findall(r"https?://[^\"' ]+", page) == [
        "http://www.w3.org/2000/svg"
    ]  # a namespace, never fetched
    assert "A/B review: reactivation-offer/offer" in page and "Recommendation:" in page


@pytest.mark.db
@pytest.mark.usefixtures("cli_env", "campaign")
def test_promote_is_recorded_and_the_report_shows_the_history() -> None:
    result = invoke(
        "ab", "promote", "reactivation-offer", "remise", "--reason", "clear winner", "--actor", "lea"
    )
    assert result.exit_code == 0, result.output
    assert "promoted 'remise' in reactivation-offer/offer (by lea); holdout kept" in result.stdout
    table = invoke("ab", "report", "reactivation-offer", "--now", REVIEW_AT, "--metric", "clicks")
    assert table.exit_code == 0, table.output
    assert "A/B review: reactivation-offer/offer" in table.stdout and "Promotions" in table.stdout
    assert "clear winner" in table.stdout and "lea" in table.stdout
    payload = json.loads(
        invoke("ab", "report", "reactivation-offer", "--format", "json", "--now", REVIEW_AT).stdout
    )
    assert [(p["variant"], p["actor"], p["holdout"]) for p in payload["promotions"]] == [
        ("remise", "lea", "kept")
    ]


@pytest.mark.db
@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report", "incubator"), "'incubator' has no step with variants"),
        (("report", "nope"), "nope"),
        (("report", "reactivation-offer", "--metric", "revenue"), "unknown metric 'revenue'"),
        (("promote", "reactivation-offer", "holdout", "--reason", "x"), "the holdout cannot be promoted"),
        (("promote", "reactivation-offer", "remisse", "--reason", "x"), "unknown variant 'remisse'"),
    ],
)
def test_ab_errors_exit_1_without_traceback(args: tuple[str, ...], message: str) -> None:
    result = invoke("ab", *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output


@pytest.mark.db
@pytest.mark.usefixtures("cli_env")
def test_conversions_import_all_or_nothing(engine: Engine, make_leads: MakeLeads, tmp_path: Path) -> None:
    make_leads(email="camille@example.fr")
    good = tmp_path / "good.csv"
    good.write_text(
        "\ufeffemail,occurred_at,value,external_id\ncamille@example.fr,2026-12-10T10:00:00Z,120,O-1\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "email,occurred_at,value\ncamille@example.fr,2026-12-11T10:00:00Z,80\nnobody@example.fr,2026-12-11T10:00:00Z,80\n",
        encoding="utf-8",
    )
    result = invoke("conversions", "import", str(good))
    assert result.exit_code == 0, result.output
    assert "recorded 1 conversion(s); 0 already known" in result.stdout
    assert "recorded 0 conversion(s); 1 already known" in invoke("conversions", "import", str(good)).stdout
    refused = invoke("conversions", "import", str(bad))
    assert refused.exit_code == 1
    assert f"{bad}:3: no lead with email nobody@example.fr" in refused.stderr
    assert "nothing imported" in refused.stderr and "Traceback" not in refused.output
    with engine.connect() as conn:
        assert len(conn.execute(select(EVENTS.c.id).where(EVENTS.c.type == "converted")).all()) == 1
