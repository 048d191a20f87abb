"""Form intake: turn stored web-form submissions into qualified, scored, routed and enrolled leads.

The API stores each submission durably, answers the form at once, then emits the
``spirale.form.submitted`` event; the ``intake`` deployment's trigger starts this flow with the
form and submission ids. The run takes in that submission and every other one still waiting, so a
submission whose event was lost (no Prefect server reachable) is picked up by the next run: the
deployment also sweeps every few minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.params import IntakeParams, load_settings, run_namer
from spirale.settings import Settings

if TYPE_CHECKING:
    from spirale.intake import IntakeReport

SUMMARY_KEY = "intake-summary"


@task(name="take-in-submissions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def take_in_submissions(settings: Settings, now: datetime, limit: int) -> IntakeReport:
    """Process up to ``limit`` waiting submissions. Safe to retry: a submission is marked
    processed in the transaction that creates its lead and enrollment, so a re-run skips it."""
    from sequences.catalog import SequenceCatalog
    from spirale import runtime
    from spirale.intake import process_submissions

    return process_submissions(
        runtime.database(settings),
        now=now,
        settings=settings,
        catalog=SequenceCatalog.open(settings.sequences_dir),
        limit=limit,
    )


def intake_rows(report: IntakeReport) -> list[dict[str, Any]]:
    """The run's counters as table rows: processed, rejected, leads per status, disqualifications."""
    rows: list[dict[str, Any]] = [
        {"outcome": "processed", "key": "", "count": report.processed},
        {"outcome": "rejected", "key": "", "count": report.rejected},
    ]
    rows += [{"outcome": "status", "key": k, "count": n} for k, n in sorted(report.statuses.items())]
    rows += [
        {"outcome": "disqualified", "key": k, "count": n} for k, n in sorted(report.disqualified.items())
    ]
    rows += [{"outcome": "notified", "key": k, "count": n} for k, n in sorted(report.notified.sent.items())]
    return rows


def _form_detail(params: Mapping[str, Any]) -> str | None:
    form = params.get("form_id")
    return str(form) if form else None


@flow(name="intake", flow_run_name=run_namer("intake", detail=_form_detail), log_prints=False)
def intake(params: IntakeParams | None = None) -> IntakeReport:
    """Take in the triggering submission and every other waiting one; publish what happened."""
    params = params or IntakeParams()
    now, settings, logger = params.instant(), load_settings(), get_run_logger()
    report = take_in_submissions(settings, now, params.limit)
    create_table_artifact(
        key=SUMMARY_KEY,
        table=intake_rows(report),
        description=f"Intake at {now:%Y-%m-%d %H:%M} UTC (form {params.form_id or '-'}, "
        f"submission {params.submission_id or '-'})",
    )
    for submission_id, error in report.errors:
        logger.warning("submission %s rejected: %s", submission_id, error)
    logger.info(
        "intake: %d processed, %d rejected, statuses %s",
        report.processed,
        report.rejected,
        dict(report.statuses) or "-",
    )
    return report
