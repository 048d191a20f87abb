"""Reconciliation: outbox rows whose outcome is ``unknown`` (the provider may or may not have taken
the message) are resolved from evidence, never by a blind resend.

Evidence is a provider event about the message, or a lookup (Twilio's message status, the local
outbox's files). Without evidence after the grace period, the row is failed. Published: the
``reconcile-summary`` table.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.params import ReconcileParams, load_settings, run_namer
from spirale.settings import Settings

if TYPE_CHECKING:
    from spirale.reconcile import ReconcileReport

SUMMARY_KEY = "reconcile-summary"


# Safe to retry: each row is resolved in its own transaction from evidence that does not change
# with a second look; a resolved row is no longer ``unknown`` and is not examined again.
@task(name="resolve-unknown", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60])
def resolve_unknown(settings: Settings, now: datetime, grace_hours: float, limit: int) -> ReconcileReport:
    """Resolve up to ``limit`` unknown outbox rows at ``now``."""
    from channels.registry import build_channels
    from spirale import runtime
    from spirale.reconcile import reconcile_unknown

    channels = {str(kind): channel for kind, channel in build_channels(settings).items()}
    return reconcile_unknown(
        runtime.database(settings),
        now=now,
        settings=settings,
        channels=channels,
        grace=timedelta(hours=grace_hours),
        limit=limit,
    )


@flow(name="reconcile", flow_run_name=run_namer("reconcile"), log_prints=False)
def reconcile(params: ReconcileParams | None = None) -> ReconcileReport:
    """Resolve the unknown outbox rows and publish what was found."""
    params = params or ReconcileParams()
    now, settings = params.instant(), load_settings()
    report = resolve_unknown(settings, now, params.grace_hours, params.limit)
    create_table_artifact(
        key=SUMMARY_KEY,
        table=report.rows(),
        description=f"Reconciliation at {now:%Y-%m-%d %H:%M} UTC: {report.summary()}",
    )
    get_run_logger().info("reconcile: %s", report.summary())
    return report
