"""The dispatch tick: every due step is sent, exactly once, by a handful of batch tasks.

One flow run per tick (the deployment runs it every minute, one at a time). The tick recovers what
a crashed tick left half-way, then claims and processes due steps in tasks of up to
``steps_per_task`` steps each, never one task per message: a Prefect task run costs milliseconds,
a step a few tens of microseconds. The report of the tick is published as the ``dispatch-summary``
table artifact; a long tick also shows a ``dispatch-progress`` progress artifact.

With ``shards > 1`` a run claims only the due steps of its shard (``models/claims.py``), so several
deployments, one per shard, can tick at once on several workers; their artifacts get the shard in
their key (``dispatch-summary-shard-1of2``) and their runs in their name
(``dispatch-2026-12-04T09:00-shard-1of2``). Recovery stays unsharded: it is safe to run concurrently.

With ``processes > 1`` each task (``dispatch-processes-N``) runs that many dispatcher processes, each
on its own part of the run's due steps (``spirale/dispatch/parallel.py``): one per core pays on a
large backlog.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func, select

from flows.params import DispatchParams, load_settings, run_namer, shard_suffix
from models.claims import Shard, in_shard
from models.db import read_only_connection
from models.tables import Enrollment, EnrollmentState
from spirale import runtime
from spirale.dispatch import Dispatcher, DispatchReport
from spirale.dispatch.parallel import ChannelFactory, dispatch_in_processes
from spirale.settings import Settings

SUMMARY_KEY = "dispatch-summary"
PROGRESS_KEY = "dispatch-progress"
# Retrying a dispatch task is safe: every message goes through the outbox (one row per enrollment,
# cycle, step and attempt, committed as ``sending`` before the provider call), claims are leased and
# every write is fenced on the lease. A re-run only claims steps that were not advanced, and a row
# that may have reached a provider becomes ``unknown`` for reconciliation, never a blind resend.
SAFE_RETRIES = 2
RETRY_DELAYS = [5.0, 20.0]

_injected: ContextVar[Dispatcher | None] = ContextVar("spirale_dispatcher", default=None)
_injected_channels: ContextVar[ChannelFactory | None] = ContextVar("spirale_channels", default=None)


@contextmanager
def dispatching_with(dispatcher: Dispatcher, channels: ChannelFactory | None = None) -> Iterator[Dispatcher]:
    """Run the dispatch tasks started in this context with ``dispatcher`` (benchmarks and
    embedders pass in-process channels this way; flows otherwise wire channels from settings).
    With ``processes`` > 1, each process builds its channels with ``channels`` (a module-level
    function: it is pickled), or from the settings."""
    token = _injected.set(dispatcher)
    channels_token = _injected_channels.set(channels)
    try:
        yield dispatcher
    finally:
        _injected_channels.reset(channels_token)
        _injected.reset(token)


def tick_dispatcher(settings: Settings, shard: Shard | None = None) -> Dispatcher:
    """The dispatcher a task works with: the injected one, else one wired from ``settings`` that
    claims the enrollments of ``shard`` (all of them without one)."""
    return _injected.get() or runtime.dispatcher(settings, shard=shard)


def artifact_key(key: str, shard: Shard | None) -> str:
    """``key`` itself, or ``key-shard-1of2`` for a sharded run."""
    return f"{key}-shard-{shard.label}" if shard is not None else key


def _of_shard(shard: Shard | None) -> str:
    return f" (shard {shard.index} of {shard.count})" if shard is not None else ""


@task(
    name="recover-unfinished", cache_policy=NO_CACHE, retries=SAFE_RETRIES, retry_delay_seconds=RETRY_DELAYS
)
def recover_unfinished(settings: Settings, now: datetime) -> DispatchReport:
    """Finish what an interrupted tick left behind: resend never-sent rows, park uncertain ones."""
    report = DispatchReport()
    tick_dispatcher(settings).recovery.run(now=now, report=report)
    return report


@task(
    name="dispatch-batches",
    task_run_name="dispatch-batches-{part}",
    cache_policy=NO_CACHE,
    retries=SAFE_RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
)
def dispatch_batches(
    settings: Settings, now: datetime, max_steps: int, part: int, shard: Shard | None = None
) -> DispatchReport:
    """Claim and process due steps (of ``shard``) batch after batch until ``max_steps`` or nothing
    is due."""
    dispatcher = tick_dispatcher(settings, shard)
    return dispatcher.drain(now=now, max_batches=-(-max_steps // dispatcher.settings.dispatch_batch_size))


@task(
    name="dispatch-processes",
    task_run_name="dispatch-processes-{part}",
    cache_policy=NO_CACHE,
    retries=SAFE_RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
)
def dispatch_processes(
    settings: Settings,
    now: datetime,
    max_steps: int,
    part: int,
    processes: int,
    shard: Shard | None = None,
) -> DispatchReport:
    """Like ``dispatch-batches``, with ``processes`` dispatcher processes (each up to
    ``max_steps`` due steps of its own part of ``shard``) on as many cores."""
    batches = -(-max_steps // settings.dispatch_batch_size)
    return dispatch_in_processes(
        settings,
        now=now,
        processes=processes,
        within=shard,
        channels=_injected_channels.get(),
        max_batches=batches,
        recover=False,
    )


@task(name="count-due", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def count_due(settings: Settings, now: datetime, shard: Shard | None = None) -> int:
    """How many enrollments (of ``shard``) are still due at ``now`` (sizes the progress of a long
    tick)."""
    table = Enrollment.__table__  # type: ignore[attr-defined]
    query = select(func.count()).where(
        table.c.state == EnrollmentState.ACTIVE.value, table.c.next_due_at <= now
    )
    injected = _injected.get()
    engine = injected.engine if injected is not None else runtime.database(settings)
    with read_only_connection(engine) as conn:
        if shard is not None:
            query = query.where(in_shard(conn, shard))
        return int(conn.execute(query).scalar_one())


class TickProgress:
    """The progress artifact of a long tick, created once the first task shows more is due."""

    def __init__(self, settings: Settings, now: datetime, shard: Shard | None = None) -> None:
        self.settings, self.now, self.shard = settings, now, shard
        self.artifact: UUID | None = None
        self.total = 0

    def advance(self, done: int) -> None:
        if self.artifact is None:
            self.total = done + count_due(self.settings, self.now, self.shard)
            created = create_progress_artifact(
                self._percent(done),
                key=artifact_key(PROGRESS_KEY, self.shard),
                description=self._describe(done),
            )
            self.artifact = cast(UUID, created)
        else:
            update_progress_artifact(self.artifact, self._percent(done), description=self._describe(done))

    def finish(self, done: int) -> None:
        if self.artifact is not None:
            update_progress_artifact(self.artifact, 100.0, description=self._describe(done))

    def _percent(self, done: int) -> float:
        return min(100.0, 100.0 * done / self.total) if self.total else 100.0

    def _describe(self, done: int) -> str:
        claimed = f"{done:,} of about {self.total:,} due steps claimed at {self.now:%Y-%m-%d %H:%M} UTC"
        return claimed + _of_shard(self.shard)


def publish_summary(report: DispatchReport, now: datetime, shard: Shard | None = None) -> None:
    """The tick's counters as the ``dispatch-summary`` table artifact (``-shard-1of2`` when sharded)."""
    create_table_artifact(
        key=artifact_key(SUMMARY_KEY, shard),
        table=report.rows(),
        description=f"Dispatch tick at {now:%Y-%m-%d %H:%M} UTC{_of_shard(shard)}: {report.summary()}",
    )


@flow(name="dispatch", flow_run_name=run_namer("dispatch", suffix=shard_suffix), log_prints=False)
def dispatch(params: DispatchParams | None = None) -> DispatchReport:
    """One tick: recover, send every due step (of the run's shard) in batch tasks, publish the report."""
    params = params or DispatchParams()
    now, settings, logger = params.instant(), load_settings(), get_run_logger()
    shard = params.claim_shard()
    report = recover_unfinished(settings, now)
    progress = TickProgress(settings, now, shard)
    for part in range(1, params.max_tasks + 1):
        if params.processes > 1:
            done = dispatch_processes(settings, now, params.steps_per_task, part, params.processes, shard)
        else:
            done = dispatch_batches(settings, now, params.steps_per_task, part, shard)
        report.merge(done)
        if not done.stopped_full:  # every dispatcher of the task ran out of due steps
            break
        if part == params.max_tasks:
            logger.warning("stopped after %d tasks; the steps still due wait for the next tick", part)
            break
        progress.advance(report.claimed)
    progress.finish(report.claimed)
    publish_summary(report, now, shard)
    logger.info("dispatch at %s%s: %s", now.isoformat(timespec="minutes"), _of_shard(shard), report.summary())
    return report
