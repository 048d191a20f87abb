"""The nightly scoring run: engagement decays, leads whose status changed move to their new track,
the owners of leads that turned hot are told, and finished sales cadences go back to marketing.

Published: the ``rescoring-moves`` table (leads per move, ``cold -> warm`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.params import ScoringParams, load_settings, run_namer
from spirale.settings import Settings

if TYPE_CHECKING:
    from scoring.notify import NotifyReport
    from scoring.rescoring import RescoreReport

MOVES_KEY = "rescoring-moves"


@dataclass(frozen=True)
class ScoringRun:
    """What the nightly run did."""

    rescored: RescoreReport
    notified: NotifyReport
    handed_back: int


# Safe to retry: decay brings each lead to ``now`` and stamps it with ``now``, so a second pass at
# the same instant finds nothing left to decay; status moves are recorded only when the status changes.
@task(name="rescore-all", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=30)
def rescore(settings: Settings, now: datetime) -> RescoreReport:
    """Decay and re-route every lead (batches of Core statements, one transaction each)."""
    from scoring.rescoring import rescore_all
    from scoring.rules import load_rules, scoring_path
    from scoring.team import load_team, team_path
    from sequences.catalog import SequenceCatalog
    from spirale import runtime

    return rescore_all(
        runtime.database(settings),
        now=now,
        rules=load_rules(scoring_path(settings.sequences_dir)),
        catalog=SequenceCatalog.open(settings.sequences_dir),
        team=load_team(team_path(settings.sequences_dir)),
    )


# Safe to retry: a notification is recorded before it is sent, and never sent twice for one task.
@task(name="notify-owners", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def notify_owners(settings: Settings, now: datetime, task_ids: list[UUID]) -> NotifyReport:
    """Tell the owners of the leads that turned hot, once per sales task."""
    from scoring.notify import notify_tasks
    from scoring.rules import load_rules, scoring_path
    from scoring.team import load_team, team_path
    from spirale import runtime

    return notify_tasks(
        runtime.database(settings),
        task_ids=task_ids,
        now=now,
        settings=settings,
        rules=load_rules(scoring_path(settings.sequences_dir)),
        team=load_team(team_path(settings.sequences_dir)),
    )


# Safe to retry: a cadence is marked as handed back in the transaction that moves its lead, so a
# second pass skips it.
@task(name="hand-back-cadences", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=30)
def hand_back(settings: Settings, now: datetime) -> int:
    """Give back to marketing the leads whose 7 sales attempts ended without success."""
    from scoring.cadence import hand_back_completed
    from scoring.rules import load_rules, scoring_path
    from sequences.catalog import SequenceCatalog
    from spirale import runtime

    rules = load_rules(scoring_path(settings.sequences_dir))
    catalog = SequenceCatalog.open(settings.sequences_dir)
    with runtime.database(settings).begin() as conn:
        return hand_back_completed(conn, now=now, rules=rules, catalog=catalog)


@flow(name="scoring", flow_run_name=run_namer("scoring"), log_prints=False)
def scoring(params: ScoringParams | None = None) -> ScoringRun:
    """Rescore every lead, notify the owners of new hot leads, hand finished cadences back."""
    params = params or ScoringParams()
    now, settings, logger = params.instant(), load_settings(), get_run_logger()
    report = rescore(settings, now)
    notified = notify_owners(settings, now, report.task_ids)
    handed_back = hand_back(settings, now)
    moves = sum(report.moves.values())
    create_table_artifact(
        key=MOVES_KEY,
        table=report.rows() or [{"from": "-", "to": "-", "leads": 0}],
        description=f"Rescoring at {now:%Y-%m-%d %H:%M} UTC: {report.scanned:,} leads scanned, "
        f"{moves:,} moved, {handed_back:,} handed back to marketing",
    )
    logger.info(
        "rescored %d leads (%d moved); notified %s; %d handed back",
        report.scanned,
        moves,
        dict(notified.sent) or "nobody",
        handed_back,
    )
    return ScoringRun(report, notified, handed_back)
