"""Webhook events applied to leads and enrollments: delivery statuses, opt-outs (suppression and
exit), bounces, clicks and replies (engagement, exits, score changes), HELP answers.

The API stores each verified event first; this flow applies them in passes of ``limit`` events
(one task each) until none is left. Published: the ``events-summary`` table.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.params import EventsParams, load_settings, run_namer
from spirale.settings import Settings

if TYPE_CHECKING:
    from spirale.events import EventsReport

SUMMARY_KEY = "events-summary"


# Safe to retry: a pass claims its events and marks them processed in one transaction, so a failed
# pass changes nothing and a retry applies the same events once.
@task(
    name="apply-events",
    task_run_name="apply-events-{part}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 20],
)
def apply_events(settings: Settings, now: datetime, limit: int, part: int) -> EventsReport:
    """Apply up to ``limit`` stored events, oldest first."""
    from spirale import runtime
    from spirale.events import process_events

    return process_events(runtime.database(settings), now=now, settings=settings, limit=limit)


def merged_rows(reports: list[EventsReport]) -> list[dict[str, str | int]]:
    """The rows of every pass, counts summed per (outcome, key)."""
    counts: Counter[tuple[str, str]] = Counter()
    for report in reports:
        for row in report.rows():
            counts[(str(row["outcome"]), str(row["key"]))] += int(row["count"])
    return [{"outcome": outcome, "key": key, "count": n} for (outcome, key), n in counts.items()]


@flow(name="process-events", flow_run_name=run_namer("process-events"), log_prints=False)
def process_events(params: EventsParams | None = None) -> list[EventsReport]:
    """Apply every stored event, pass after pass, and publish what changed."""
    params = params or EventsParams()
    now, settings, logger = params.instant(), load_settings(), get_run_logger()
    reports = []
    for part in range(1, params.max_passes + 1):
        report = apply_events(settings, now, params.limit, part)
        reports.append(report)
        logger.info("pass %d: %s", part, report.summary())
        if not report.more:
            break
    else:
        logger.warning("stopped after %d passes; the events left wait for the next run", params.max_passes)
    total = sum(r.total for r in reports)
    create_table_artifact(
        key=SUMMARY_KEY,
        table=merged_rows(reports) or [{"outcome": "processed", "key": "", "count": 0}],
        description=f"Events applied at {now:%Y-%m-%d %H:%M} UTC: {total:,} in {len(reports)} pass(es)",
    )
    return reports
