"""The report's charts as inline SVG (no script, no network, no plotting library): the funnel,
sends per day by channel, and one lead's schedule drawn on the golden spiral."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from html import escape
from zoneinfo import ZoneInfo

from spirale.demo.results import Journey

PARIS = ZoneInfo("Europe/Paris")
PHI = (1 + math.sqrt(5)) / 2
COLOURS = {"email": "#2680c2", "sms": "#e8833a", "sales task": "#3f9142", "call": "#3f9142"}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(width: int, height: int, title: str, body: Sequence[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT}>',
            f"<title>{escape(title)}</title>",
            *body,
            "</svg>",
        ]
    )


def funnel_chart(stages: Sequence[tuple[str, int]], *, width: int = 760) -> str:
    """One bar per stage, as wide as its count, with the count and the share kept."""
    left, row, top = 110, 34, 10
    plot = width - left - 150
    largest = max((count for _, count in stages), default=0) or 1
    body: list[str] = []
    previous: int | None = None
    for index, (stage, count) in enumerate(stages):
        y = top + index * row
        bar = max(2.0, plot * count / largest) if count else 0.0
        share = f" ({count / previous:.0%})" if previous else ""
        body += [
            f'<text x="{left - 10}" y="{y + 18}" text-anchor="end" fill="#1f2933">{escape(stage)}</text>',
            f'<rect x="{left}" y="{y + 4}" width="{bar:.1f}" height="{row - 10}" rx="3" fill="#2680c2"'
            f' opacity="{1 - index * 0.1:.2f}"><title>{escape(stage)}: {count:,}</title></rect>',
            f'<text x="{left + bar + 8:.1f}" y="{y + 18}" fill="#1f2933">{count:,}{share}</text>',
        ]
        previous = count
    return _svg(width, top + row * len(stages) + 10, "The funnel", body)


def timeline_chart(per_day: dict[date, Counter[str]], *, start: date, days: int, width: int = 900) -> str:
    """Stacked bars: messages sent per day by channel, and the sales tasks put on owners' lists."""
    series = ("email", "sms", "sales task")
    left, top, height, bottom = 50, 30, 220, 40
    step = (width - left - 20) / max(days, 1)
    tallest = max(
        (sum(per_day.get(start + timedelta(d), Counter()).values()) for d in range(days)), default=0
    )
    scale_max = _nice(tallest)
    body = _y_axis(left, top, height, width, scale_max)
    for index in range(days):
        day = start + timedelta(days=index)
        x = left + index * step
        body += _stacked_bar(
            per_day.get(day, Counter()),
            series,
            day,
            x=x,
            width=step,
            bottom=top + height,
            scale=height / scale_max,
        )
        if day.weekday() == 0:
            body.append(f'<text x="{x:.1f}" y="{top + height + 16}" fill="#52606d">{day:%d %b}</text>')
    body += _legend(series, x=left, y=top - 14)
    return _svg(width, top + height + bottom, "Sends per day by channel", body)


def _stacked_bar(
    counts: Counter[str],
    series: Sequence[str],
    day: date,
    *,
    x: float,
    width: float,
    bottom: int,
    scale: float,
) -> list[str]:
    """One day's bar: a segment per series, stacked from the bottom."""
    y, bars = float(bottom), []
    for name in series:
        value = counts.get(name, 0)
        if value:
            h = scale * value
            y -= h
            bars.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(width - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[name]}"><title>{day:%a %d %b}: {value:,} {name}</title></rect>'
            )
    return bars


def _y_axis(left: int, top: int, height: int, width: int, scale_max: float) -> list[str]:
    marks = []
    for tick in range(5):
        value = scale_max * tick / 4
        y = top + height - height * tick / 4
        marks.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#52606d">{value:,.0f}</text>'
        )
    return marks


def _legend(names: Sequence[str], *, x: int, y: int) -> list[str]:
    items = []
    for index, name in enumerate(names):
        left = x + index * 110
        items.append(
            f'<rect x="{left}" y="{y - 9}" width="12" height="12" fill="{COLOURS[name]}"/>'
            f'<text x="{left + 17}" y="{y + 1}" fill="#1f2933">{escape(name)}</text>'
        )
    return items


def _nice(value: float) -> float:
    """The axis maximum: the next of 1, 2, 2.5, 5 x 10^k at or above ``value``."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(base * magnitude for base in (1, 2, 2.5, 5, 10) if base * magnitude >= value)


def spiral_chart(journey: Journey, *, size: int = 460) -> str:
    """The lead's schedule as a golden spiral: each gap between two messages is a quarter turn,
    drawn at its length, so gaps growing by the golden ratio lie on the golden spiral (dashed:
    the ideal one, from the first gap), and a gap a send window stretched or shortened stands off
    it. Many touches close to the centre, then wider and wider: the spirale d'or."""
    if not journey.touches:
        return _svg(size, size, "No message yet", [])
    gaps = [max((b.at - a.at).total_seconds(), 60.0) for a, b in itertools.pairwise(journey.touches)]
    first = gaps[0] if gaps else 1.0
    ideal = [_polar(first * PHI ** (angle / (math.pi / 2) - 1), angle) for angle in _angles(len(gaps))]
    dots = [(0.0, 0.0), *(_polar(gap, (k + 1) * math.pi / 2) for k, gap in enumerate(gaps))]
    actual = _actual_path(gaps)
    place, height = _fit([*ideal, *dots, *actual], size=size, margin=24)
    body = [
        _polyline(map(place, ideal), 'stroke="#9aa5b1" stroke-width="1.5" stroke-dasharray="6 4"'),
        _polyline(map(place, actual), 'stroke="#7b93ab" stroke-width="2.5"'),
    ]
    for number, (touch, dot) in enumerate(zip(journey.touches, dots, strict=True), start=1):
        x, y = place(dot)
        colour = COLOURS.get(touch.channel, "#52606d")
        local = touch.at.astimezone(PARIS)
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="11" fill="{colour}" stroke="#fff" stroke-width="2">'
            f"<title>{escape(touch.step)}: {local:%a %d %b %H:%M}</title></circle>"
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" fill="#fff" '
            f'font-weight="bold">{number}</text>'
        )
    body += _legend(("email", "sms"), x=10, y=height + 44)
    return _svg(size, height + 56, f"The golden-spiral schedule of {journey.lead}", body)


Point = tuple[float, float]


def _polyline(points: Iterable[Point], style: str) -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{path}" fill="none" {style}/>'


def _actual_path(gaps: Sequence[float]) -> list[Point]:
    """The lead's own spiral: a line from the centre out to the first gap, then each quarter
    turn growing (or shrinking) from one gap's length to the next."""
    path = [(0.0, 0.0)]
    if gaps:
        path.append(_polar(gaps[0], math.pi / 2))
    for index, (before, after) in enumerate(itertools.pairwise(gaps), start=1):
        start = index * math.pi / 2
        for step in range(1, 41):
            share = step / 40
            path.append(_polar(before * (after / before) ** share, start + share * math.pi / 2))
    return path


def _polar(radius: float, angle: float) -> Point:
    return radius * math.cos(angle), -radius * math.sin(angle)


def _angles(quarters: int) -> list[float]:
    """Samples of the ideal spiral, from the first gap's quarter turn to the last one."""
    if quarters < 1:
        return []
    steps = 40 * quarters
    return [math.pi / 2 * (1 + (quarters - 1) * i / steps) for i in range(steps + 1)]


def _fit(points: Sequence[Point], *, size: int, margin: int) -> tuple[Callable[[Point], Point], int]:
    """Scale and move ``points`` into a ``size`` wide square, keeping proportions; returns the
    placing function and the height the drawing takes."""
    low_x, low_y = min(p[0] for p in points), min(p[1] for p in points)
    width, height = max(p[0] for p in points) - low_x, max(p[1] for p in points) - low_y
    room = size - 2 * margin
    scale = room / (max(width, height) or 1.0)
    left = margin + (room - scale * width) / 2

    def place(point: Point) -> Point:
        return left + scale * (point[0] - low_x), margin + scale * (point[1] - low_y)

    return place, math.ceil(scale * height)


def journey_rows(journey: Journey) -> list[dict[str, str]]:
    """The legend of the spiral: each message, when it went out and the gap since the previous one."""
    rows = []
    previous = journey.enrolled_at
    for number, touch in enumerate(journey.touches, start=1):
        gap = touch.at - previous
        rows.append(
            {
                "#": str(number),
                "step": touch.step + (f" ({touch.variant})" if touch.variant else ""),
                "channel": touch.channel,
                "sent": f"{touch.at.astimezone(PARIS):%a %d %b %H:%M}",
                "after": _duration(gap),
            }
        )
        previous = touch.at
    return rows


def _duration(gap: timedelta) -> str:
    hours = gap.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} days"
