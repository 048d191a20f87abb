"""One dispatch tick run by several processes: each claims only its own shard of the due
enrollments (``models.claims.Shard``: the last byte of the lead id modulo the number of
processes), so the processes never compete for a row, a step is still sent exactly once, and all of
a lead's steps are decided by one process, which sees every send the frequency cap counts.

Rendering and the send-time checks are CPU work that one Python process runs on one core; the
database work is short transactions. Several processes therefore multiply the throughput of one
tick on a machine with several cores, on SQLite (whose write lock they share) as on PostgreSQL.

The processes come from a ``forkserver`` (``spawn`` where there is none): a clean single-threaded
server process imports the dispatch code once, and every tick's processes are forked from it, so
they inherit no connection, thread or lock from the caller (which may be a Prefect flow with its
own threads) and start in milliseconds instead of re-importing everything (about 1.5 s each).
Each process takes the caller's working directory and environment of the moment, as a spawned one
would (``multiprocessing`` passes the directory; the environment goes with the task). Recovery of
what an earlier tick left half-way runs once, in the caller, before the shards start.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing.context import BaseContext

from channels.base import AnyChannel as DeliveryChannel
from models.claims import Shard
from sequences.catalog import SequenceCatalog
from spirale.dispatch.engine import Dispatcher
from spirale.dispatch.report import DispatchReport
from spirale.settings import Settings

#: Builds the channels of one process from the settings; a module-level function (it is pickled).
ChannelFactory = Callable[[Settings], Mapping[str, DeliveryChannel]]


def default_processes() -> int:
    """One dispatcher process per core the machine lets this process use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def split_shard(processes: int, within: Shard | None = None) -> list[Shard]:
    """The shards of ``processes`` processes that together cover ``within`` (everything if None).

    Process ``p`` of shard ``k`` out of ``S`` takes shard ``k + S*p`` out of ``S*processes``: an id
    whose last byte ``b`` has ``b % (S*processes) == k + S*p`` also has ``b % S == k``."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    index, count = (within.index, within.count) if within is not None else (0, 1)
    return [Shard(index + count * p, count * processes) for p in range(processes)]


def dispatch_in_processes(
    settings: Settings,
    *,
    now: datetime,
    processes: int,
    within: Shard | None = None,
    channels: ChannelFactory | None = None,
    max_batches: int | None = None,
    recover: bool = True,
) -> DispatchReport:
    """Send every step due at ``now`` (of the shard ``within``, if given) with ``processes``
    dispatcher processes, one sub-shard each; returns the merged report. ``processes=1`` runs in
    this process. ``max_batches`` bounds each process; ``recover=False`` skips the recovery of
    earlier ticks (the caller ran it)."""
    shards = split_shard(processes, within)
    report = DispatchReport()
    if processes == 1:
        dispatcher = build_dispatcher(settings, within, channels)
        if recover:
            dispatcher.recovery.run(now=now, report=report)
        report.merge(dispatcher.drain(now=now, max_batches=max_batches))
        return report
    if recover:
        build_dispatcher(settings, within, channels).recovery.run(now=now, report=report)
    with ProcessPoolExecutor(max_workers=processes, mp_context=process_context()) as pool:
        environ = dict(os.environ)
        futures = [
            pool.submit(run_shard, settings, now, shard, channels, max_batches, environ) for shard in shards
        ]
        for future in futures:
            report.merge(future.result())
    return report


def process_context() -> BaseContext:
    """The ``forkserver`` context, preloaded with the dispatch code (``spawn`` where there is no
    forkserver, as on Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "spirale.runtime"])  # read once, when the server starts
    return context


def build_dispatcher(settings: Settings, shard: Shard | None, channels: ChannelFactory | None) -> Dispatcher:
    """The dispatcher of one process: channels from ``channels`` if given, else from the settings."""
    from spirale import runtime

    if channels is None:
        return runtime.dispatcher(settings, shard=shard)
    return Dispatcher(
        engine=runtime.database(settings),
        catalog=SequenceCatalog.open(settings.sequences_dir),
        channels=channels(settings),
        settings=settings,
        shard=shard,
    )


def run_shard(
    settings: Settings,
    now: datetime,
    shard: Shard,
    channels: ChannelFactory | None = None,
    max_batches: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> DispatchReport:
    """One process's part of the tick: claim and process the shard's due steps until none is left
    (or ``max_batches``), then close the process's database connections."""
    if environ is not None:
        # A forked process has the environment of the forkserver's start, not the caller's.
        os.environ.clear()
        os.environ.update(environ)
    dispatcher = build_dispatcher(settings, shard, channels)
    try:
        return dispatcher.drain(now=now, max_batches=max_batches)
    finally:
        dispatcher.engine.dispose()
