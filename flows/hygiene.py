"""Data hygiene: the retention purge (CNIL). Prospects who initiated no contact for three years
(a click counts, an open does not) are deleted with every row tied to them; the hashes of their
suppressions stay, so an opted-out address is still blocked. Published: the ``hygiene-purge``
table of what was purged, by status and by table."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.params import HygieneParams, load_settings, run_namer
from spirale.settings import Settings

if TYPE_CHECKING:
    from spirale.privacy import PurgeReport

SUMMARY_KEY = "hygiene-purge"


# Safe to retry: the purge is one transaction selecting by a cutoff; a re-run finds only what is
# still there.
@task(name="purge-inactive", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[30, 120])
def purge(settings: Settings, now: datetime, years: int, dry_run: bool) -> PurgeReport:
    """Delete (or count, on a dry run) the prospects inactive for ``years`` at ``now``."""
    from spirale import runtime
    from spirale.privacy import purge_inactive

    with runtime.database(settings).begin() as conn:
        return purge_inactive(conn, now=now, years=years, dry_run=dry_run)


def purge_rows(report: PurgeReport) -> list[dict[str, str | int]]:
    """The purge as table rows: leads by status, then rows by table."""
    rows: list[dict[str, str | int]] = [
        {"what": "leads", "key": status, "count": count} for status, count in sorted(report.by_status.items())
    ]
    rows += [{"what": "rows", "key": table, "count": count} for table, count in sorted(report.rows.items())]
    return rows or [{"what": "leads", "key": "-", "count": 0}]


@flow(name="hygiene", flow_run_name=run_namer("hygiene"), log_prints=False)
def hygiene(params: HygieneParams | None = None) -> PurgeReport:
    """Purge the prospects past retention and publish what went."""
    params = params or HygieneParams()
    now, settings = params.instant(), load_settings()
    report = purge(settings, now, params.years, params.dry_run)
    verb = "would purge" if report.dry_run else "purged"
    create_table_artifact(
        key=SUMMARY_KEY,
        table=purge_rows(report),
        description=f"Retention at {now:%Y-%m-%d}: {verb} {report.leads} leads inactive since "
        f"{report.cutoff:%Y-%m-%d}",
    )
    get_run_logger().info("hygiene: %s %d leads (cutoff %s)", verb, report.leads, report.cutoff.date())
    return report
