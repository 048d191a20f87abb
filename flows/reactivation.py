"""The weekly reactivation campaigns: "wake the dead and the non-clickers" with an offer.

Each sequence named in the parameters selects its audience (its ``audience:`` block) and enrolls
it; the dispatch ticks then send the offer. Published per sequence: ``reactivation-<sequence>``
(who was selected and why) and ``reactivation-<sequence>-excluded`` (who was screened out, by reason).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.params import ReactivationParams, load_settings, run_namer
from spirale.settings import Settings

if TYPE_CHECKING:
    from scoring.reactivation import ReactivationReport

# The selected table lists at most this many leads; the description gives the full counts.
ARTIFACT_ROWS = 1000


# Safe to retry: a lead already live in the sequence is left alone, so a second pass enrolls no one twice.
@task(
    name="reactivate",
    task_run_name="reactivate-{sequence_name}",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=30,
)
def reactivate(settings: Settings, now: datetime, sequence_name: str) -> ReactivationReport:
    """Select the audience of ``sequence_name`` at ``now`` and enroll it."""
    from scoring.reactivation import run_reactivation
    from sequences.catalog import SequenceCatalog
    from spirale import runtime

    return run_reactivation(
        runtime.database(settings),
        now=now,
        catalog=SequenceCatalog.open(settings.sequences_dir),
        sequence_name=sequence_name,
    )


def artifact_key(sequence_name: str) -> str:
    """Artifact keys are lowercase with dashes."""
    return "reactivation-" + sequence_name.lower().replace("_", "-")


def publish(report: ReactivationReport) -> None:
    """Who was selected and why, and who was screened out, as two table artifacts."""
    key = artifact_key(report.sequence)
    create_table_artifact(
        key=key,
        table=report.rows(limit=ARTIFACT_ROWS) or [{"lead_id": "-", "email": "", "status": "", "reason": ""}],
        description=f"Reactivation at {report.now:%Y-%m-%d %H:%M} UTC: {report.summary()}",
    )
    create_table_artifact(
        key=f"{key}-excluded",
        table=report.exclusion_rows() or [{"excluded because": "-", "leads": 0}],
        description=f"Leads matching the audience of {report.sequence} but screened out, by reason",
    )


@flow(name="reactivation", flow_run_name=run_namer("reactivation"), log_prints=False)
def reactivation(params: ReactivationParams | None = None) -> list[ReactivationReport]:
    """Select and enroll the audience of each reactivation sequence."""
    params = params or ReactivationParams()
    now, settings, logger = params.instant(), load_settings(), get_run_logger()
    reports = []
    for sequence_name in params.sequences:
        report = reactivate(settings, now, sequence_name)
        publish(report)
        logger.info("%s", report.summary())
        reports.append(report)
    return reports
