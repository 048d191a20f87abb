"""Rendering a review: the Markdown artifact, the table rows, the JSON data and the SVG chart."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

from scoring.ab_report import Review, rate_chart, render_html, render_table
from scoring.ab_stats import ArmCounts, analyze
from scoring.experiments import ArmOutcome, Experiment
from scoring.promotion import PromotionRecord

EXPERIMENT = Experiment(
    "reactivation-offer", "offer", ("remise", "audit-offert", "holdout"), ("offer", "reminder")
)
AT = datetime(2027, 2, 5, 9, 0, tzinfo=UTC)


def review(*, promotions: tuple[PromotionRecord, ...] = ()) -> Review:
    stats = analyze(
        [ArmCounts("holdout", 408, 15), ArmCounts("remise", 1838, 191), ArmCounts("audit-offert", 1754, 123)]
    )
    outcomes = (
        ArmOutcome(
            "remise", recipients=1838, sent=1838, delivered=1800, clicks=140, conversions=191, revenue=40000.0
        ),
        ArmOutcome("audit-offert", recipients=1754, sent=1754, delivered=1700, clicks=90, conversions=123),
        ArmOutcome("holdout", recipients=408, conversions=15, open_windows=3),
    )
    return Review(EXPERIMENT, "conversions", timedelta(days=30), AT, outcomes, stats, promotions)


def test_table_rows_put_the_holdout_first_with_funnel_and_statistics() -> None:
    rows = review().table_rows()
    assert [row["arm"] for row in rows] == ["holdout", "remise", "audit-offert"]
    remise = rows[1]
    assert (remise["recipients"], remise["conversions"], remise["revenue"]) == (1838, 191, 40000.0)
    assert (remise["rate"], remise["95% CI"], remise["lift"]) == ("10.4%", "9.1% – 11.9%", "+6.7 pts")
    assert remise["P(beat holdout)"] == ">99.9%" and rows[0]["lift"] == "—"


def test_markdown_leads_with_the_recommendation_and_shows_promotions() -> None:
    promoted = PromotionRecord(
        uuid.uuid4(), "reactivation-offer", "offer", "remise", True, "lea", "clear | winner", AT
    )
    text = review(promotions=(promoted,)).markdown()
    assert text.startswith("# A/B review: reactivation-offer/offer\n")
    assert (
        "**Recommendation:** Promote 'remise': its conversion rate is 10.4% against 3.7% for the holdout"
        in text
    )
    assert "3 leads still inside their window" in text
    assert "| arm | recipients | sent |" in text
    assert "| 2027-02-05T09:00+00:00 | remise | kept | lea | clear \\| winner |" in text
    assert "No promotion yet" in review().markdown()


def test_json_keeps_the_stats_shape_and_adds_intervals_and_funnel() -> None:
    data = json.loads(review().to_json())
    assert data["experiment"] == "reactivation-offer/offer" and data["winner"] == "remise"
    assert data["window_days"] == 30 and data["enough_data"] is True
    remise = data["variants"][1]
    assert remise["id"] == "remise" and len(remise["lift_abs_ci"]) == 2 and remise["funnel"]["clicks"] == 140
    assert data["variants"][0]["lift_abs_ci"] is None


def test_the_chart_draws_each_arm_against_the_holdout_line() -> None:
    stats = review().stats
    svg = rate_chart(stats)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<circle") == 3 and "remise ★" in svg
    dashed = re.search(r'<line x1="([\d.]+)"[^>]*stroke-dasharray', svg)
    holdout_dot = re.search(r'<circle cx="([\d.]+)"[^>]*><title>holdout', svg)
    assert dashed and holdout_dot and dashed.group(1) == holdout_dot.group(1)
    assert ">20.0%</text>" in svg  # the axis ends at a round figure above the highest interval


def test_the_chart_copes_with_no_conversion_at_all() -> None:
    svg = rate_chart(analyze([ArmCounts("holdout", 0, 0), ArmCounts("remise", 0, 0)]))
    assert svg.count("<circle") == 2 and "nan" not in svg.lower()


def test_text_and_html_renderings_carry_the_same_advice() -> None:
    current = review()
    text, page = render_table(current), render_html(current)
    assert "Recommendation: Promote 'remise'" in text and "Funnel (distinct leads)" in text
    assert "Conversions against the holdout" in text
    assert "<strong>Recommendation:</strong> Promote &#x27;remise&#x27;" in page
