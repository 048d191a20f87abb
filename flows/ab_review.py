"""The daily A/B review: which offer wins, by how much, and how sure we are.

For each experiment (a step with variants and a holdout) the flow measures every arm at ``now`` and
publishes the review as the ``ab-<sequence>-<step>`` Markdown artifact (statistics,
recommendation, promotion history) and the ``ab-<sequence>-<step>-arms`` table. With
``auto_promote`` a winner that passes the sample guard and the threshold gets future assignments.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.params import ABReviewParams, load_settings, run_namer
from spirale.settings import Settings

if TYPE_CHECKING:
    from scoring.ab_report import Review
    from scoring.promotion import PromotionRecord


@task(name="find-experiments", cache_policy=NO_CACHE)
def find_experiments(settings: Settings, names: list[str]) -> list[str]:
    """The experiments to review: those named, else every experiment of the library with a holdout."""
    from scoring.experiments import experiments_in, resolve_experiment
    from sequences.catalog import SequenceCatalog
    from sequences.loader import load_library
    from sequences.variants import HOLDOUT

    if names:
        catalog = SequenceCatalog.open(settings.sequences_dir)
        return [resolve_experiment(name, catalog).name for name in names]
    library = load_library(settings.sequences_dir)
    return [
        experiment.name
        for sequence in library.values()
        for experiment in experiments_in(sequence)
        if HOLDOUT in experiment.arms
    ]


# Read-only: safe to retry.
@task(name="review-experiment", task_run_name="review-{experiment}", cache_policy=NO_CACHE, retries=1)
def review_experiment(
    settings: Settings, now: datetime, experiment: str, metric: str, window_days: int
) -> Review:
    """Measure ``experiment`` at ``now`` and compute its statistics on ``metric``."""
    from scoring.ab_report import build_review
    from sequences.catalog import SequenceCatalog
    from spirale import runtime

    return build_review(
        runtime.database(settings),
        experiment=experiment,
        now=now,
        metric=metric,
        catalog=SequenceCatalog.open(settings.sequences_dir),
        window=timedelta(days=window_days),
    )


# Safe to retry: a winner already promoted is not promoted again.
@task(
    name="promote-winner", task_run_name="promote-{review.experiment.name}", cache_policy=NO_CACHE, retries=1
)
def promote_winner(
    settings: Settings, now: datetime, review: Review, threshold: float
) -> PromotionRecord | None:
    """Promote the review's winner when its guard and ``threshold`` are met (else nothing)."""
    from scoring.promotion import auto_promote
    from spirale import runtime

    with runtime.database(settings).begin() as conn:
        return auto_promote(
            conn,
            sequence=review.experiment.sequence,
            step=review.experiment.step,
            stats=review.stats,
            now=now,
            threshold=threshold,
        )


def publish(review: Review) -> None:
    """The review as Markdown (``ab-<experiment>``) and its arms as a table (``...-arms``)."""
    key, name = review.experiment.key, review.experiment.name
    create_markdown_artifact(review.markdown(), key=key, description=f"A/B review of {name}")
    create_table_artifact(review.table_rows(), key=f"{key}-arms", description=f"{name}: {review.headline()}")


@flow(name="ab-review", flow_run_name=run_namer("ab-review"), log_prints=False)
def ab_review(params: ABReviewParams | None = None) -> list[Review]:
    """Review every experiment (or those named) and publish each review."""
    params = params or ABReviewParams()
    now, settings, logger = params.instant(), load_settings(), get_run_logger()
    reviews = []
    for name in find_experiments(settings, params.experiments):
        review = review_experiment(settings, now, name, params.metric, params.window_days)
        publish(review)
        logger.info("%s: %s", name, review.stats.recommendation)
        if params.auto_promote:
            promoted = promote_winner(settings, now, review, params.threshold)
            if promoted is not None:
                logger.info("%s: %s promoted (%s)", name, promoted.variant, promoted.reason)
        reviews.append(review)
    return reviews
