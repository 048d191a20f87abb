"""Schedule computation: ``next_due`` calls per second over a realistic mix, against the plain
golden-ratio arithmetic measured in the same run.

The mix: a golden-spiral sequence with email, SMS and a sales call, French and US send windows,
four time zones, jitter, and previous-send instants drawn over two years (weekends included) with a
share pinned to public holidays and to the evening edge of the SMS window.

    python -m benchmarks.schedule [--n N] [--repeats R] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays

from sequences.planner import next_due
from sequences.schema import Sequence

TARGET = 20_000
ZONES = [("Europe/Paris", "FR"), ("Europe/Paris", "FR"), ("America/New_York", "US"), ("Europe/London", "GB")]
ZONES += [("Asia/Tokyo", "JP")]
SEQUENCE = Sequence.model_validate(
    {
        "name": "whitepaper-nurture",
        "spacing": {"golden": {"first": "1d", "ratio": 1.618, "max_gap": "30d"}},
        "jitter": "10m",
        "steps": [
            {"id": "welcome", "channel": "email", "template": "welcome.j2"},
            {"id": "sms-guide", "channel": "sms", "text": "Votre guide. STOP au 36180"},
            {"id": "case-study", "channel": "email", "template": "case.j2"},
            {"id": "call", "channel": "call", "note": "Qualify"},
            {"id": "webinar", "channel": "email", "template": "webinar.j2"},
            {"id": "sms-offer", "channel": "sms", "text": "Offre. STOP au 36180"},
            {"id": "last-chance", "channel": "email", "template": "last.j2"},
        ],
    }
)


@dataclass(frozen=True, slots=True)
class Case:
    """One next-due computation: which step, after which send, for which lead."""

    index: int
    previous_at: datetime
    tz: ZoneInfo
    country: str
    lead_key: str


def make_cases(n: int, seed: int = 2026) -> list[Case]:
    """``n`` cases: uniform instants over 2026-2027, plus 10% on holidays and 10% near 20:00 local."""
    rng = random.Random(seed)
    holiday_days = sorted(holidays.country_holidays("FR", years=[2026, 2027]))
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    cases = []
    for i in range(n):
        zone, country = rng.choice(ZONES)
        tz = ZoneInfo(zone)
        roll = rng.random()
        if roll < 0.1:
            at = _local(rng.choice(holiday_days), rng.randrange(24 * 60), tz)
        elif roll < 0.2:
            day = origin.date() + timedelta(days=rng.randrange(730))
            at = _local(day, 19 * 60 + rng.randrange(120), tz)
        else:
            at = origin + timedelta(seconds=rng.randrange(730 * 86400))
        cases.append(Case(1 + rng.randrange(len(SEQUENCE.steps) - 1), at, tz, country, f"lead-{i}"))
    return cases


def _local(day: date, minute_of_day: int, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, minute_of_day // 60, minute_of_day % 60, tzinfo=tz)


def run_next_due(cases: list[Case]) -> int:
    """The real hot path; returns how many decisions moved (so the work cannot be skipped)."""
    moved = 0
    for case in cases:
        decision = next_due(
            SEQUENCE, case.index, case.previous_at, tz=case.tz, country=case.country, lead_key=case.lead_key
        )
        moved += decision.moved is not None
    return moved


def run_phi_arithmetic(cases: list[Case]) -> int:
    """The baseline: first x ratio^(k-1), added to the previous instant and rounded up to a minute."""
    first, ratio = 86400.0, 1.618
    total = 0
    for case in cases:
        due = case.previous_at.timestamp() + first * ratio ** (case.index - 1)
        total += math.ceil(due / 60) * 60
    return total


def rate(fn: Callable[[list[Case]], int], cases: list[Case], repeats: int) -> tuple[float, list[float], int]:
    """Median items/s over ``repeats`` runs, every run's rate, and the last run's result."""
    rates, result = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(cases)
        rates.append(len(cases) / (time.perf_counter() - start))
    return statistics.median(rates), rates, result


def main() -> None:
    """Measure and print the figures (human lines, or one JSON object with ``--json``)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50_000, help="next-due computations per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the median is reported")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    cases = make_cases(args.n)
    run_next_due(cases)  # warm-up: holiday calendars load once per (country, year)
    value, runs, moved = rate(run_next_due, cases, args.repeats)
    baseline, baseline_runs, _ = rate(run_phi_arithmetic, cases, args.repeats)
    result = {
        "name": "schedule.next_due",
        "value": round(value),
        "unit": "next-due/s",
        "baseline": round(baseline),
        "baseline_name": "plain phi arithmetic (first * ratio**(k-1) + round up)",
        "ratio": round(value / baseline, 4),
        "target": TARGET,
        "meets_target": value >= TARGET,
        "n": args.n,
        "repeats": args.repeats,
        "runs": [round(r) for r in runs],
        "baseline_runs": [round(r) for r in baseline_runs],
        "moved_share": round(moved / len(cases), 3),
    }
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return
    print(f"next_due:            {value:>12,.0f} /s  (median of {args.repeats} runs of {args.n:,})")
    print(f"phi arithmetic:      {baseline:>12,.0f} /s  (same-run baseline)")
    print(f"ratio to baseline:   {value / baseline:>12.3f}")
    print(f"moved by a window:   {moved / len(cases):>12.1%}")
    print(f"target {TARGET:,}/s:       {'met' if value >= TARGET else 'MISSED':>12}")


if __name__ == "__main__":
    main()
