"""The report's inline SVG charts, and the agenda the market's reactions wait on."""

from __future__ import annotations

import itertools
import math
import re
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from channels.webhooks import NormalizedEvent
from models.tables import EventType
from spirale.demo.behaviour import Agenda, Conversion
from spirale.demo.charts import PHI, funnel_chart, journey_rows, spiral_chart, timeline_chart
from spirale.demo.results import Journey, Touch

START = datetime(2027, 1, 4, 9, 30, tzinfo=UTC)
CIRCLE = re.compile(r'<circle cx="([\d.]+)" cy="([\d.]+)"')


def golden_journey(touches: int) -> Journey:
    at, gap, found = START, timedelta(days=1), []
    for index in range(touches):
        found.append(Touch(f"step-{index}", "sms" if index == 1 else "email", at, None))
        at, gap = at + gap, gap * PHI
    return Journey("whitepaper-nurture", "Camille Durand (Atelier Durand)", START, tuple(found))


def test_the_spiral_draws_each_gap_as_a_quarter_turn_of_its_length() -> None:
    svg = spiral_chart(golden_journey(8), size=400)
    centres = [(float(x), float(y)) for x, y in CIRCLE.findall(svg)]
    assert len(centres) == 8 and "<polyline" in svg
    origin = centres[0]
    radii = [math.dist(point, origin) for point in centres[1:]]
    angles = [math.atan2(origin[1] - y, x - origin[0]) for x, y in centres[1:]]
    for before, after in itertools.pairwise(range(len(radii))):
        assert radii[after] / radii[before] == pytest.approx(PHI, rel=0.01)
        turn = (angles[after] - angles[before]) % (2 * math.pi)
        assert turn == pytest.approx(math.pi / 2, abs=0.01)


def test_the_spiral_legend_gives_each_gap() -> None:
    rows = journey_rows(golden_journey(3))
    assert [row["after"] for row in rows] == ["0 h", "24 h", "39 h"]
    assert rows[1]["channel"] == "sms"


def test_the_timeline_stacks_one_bar_per_day_and_channel() -> None:
    first = date(2027, 1, 4)
    per_day = {first: Counter(email=120, sms=3), first + timedelta(days=2): Counter({"sales task": 2})}
    svg = timeline_chart(per_day, start=first, days=7)
    bars = re.findall(r"<rect [^>]*><title>([^<]+)</title>", svg)
    assert bars == ["Mon 04 Jan: 120 email", "Mon 04 Jan: 3 sms", "Wed 06 Jan: 2 sales task"]


def test_the_funnel_shows_every_stage_with_its_share() -> None:
    svg = funnel_chart([("downloads", 1000), ("qualified", 100), ("warm", 0)])
    assert "1,000" in svg and "100 (10%)" in svg and "0 (0%)" in svg


def test_the_agenda_gives_back_what_happened_in_order() -> None:
    lead = uuid.uuid4()
    late = Conversion(lead, START + timedelta(days=3), 900.0, "DEMO-1")
    soon = NormalizedEvent(EventType.OPEN, "k1", START + timedelta(hours=2), "sendgrid")
    sooner = NormalizedEvent(EventType.CLICK, "k2", START + timedelta(hours=1), "sendgrid")
    agenda = Agenda()
    agenda.add([late, soon, sooner])
    assert agenda.due(START) == []
    assert agenda.due(START + timedelta(days=1)) == [sooner, soon]
    assert len(agenda) == 1 and agenda.due(START + timedelta(days=3)) == [late]
