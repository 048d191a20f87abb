"""Dispatch throughput with N dispatcher processes on one database:
``python -m benchmarks.dispatch_workers --db postgresql://... --workers 2,4,8 [--leads N] [--json]``
(``python -m benchmarks.dispatch --workers ...`` runs the same through :func:`main_workers`).

The leads of ``benchmarks.dispatch`` are enrolled once (half email-first, half SMS-first, all due
on a Monday morning). For each N, the enrollments are reset, N processes are spawned (each with its
own ``Dispatcher``, a unique worker id and an in-process null provider), released together, and
timed until the last one finds nothing due. Duplicates are counted in the database: a second
``sent`` row for one (enrollment, cycle, step), or more sends reported by the workers than rows.

Without ``--db`` the workers share a fresh SQLite file, where claims are serialized by the write
lock; PostgreSQL's ``FOR UPDATE SKIP LOCKED`` is the scale-out path this measures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

from sqlalchemy import Engine, func, select, text

from benchmarks.common import emit, fresh_sqlite, null_channels
from models.db import make_engine, safe_url, upgrade
from models.tables import OutboxMessage
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.settings import Settings

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
DEFAULT_WORKERS = (2, 4, 8)
START_TIMEOUT_S = 300


def parse_workers(value: str | int | list[int]) -> list[int]:
    """``"2,4,8"`` (or one number) as a list of worker counts."""
    if isinstance(value, int):
        counts = [value]
    elif isinstance(value, list):
        counts = value
    else:
        counts = [int(part) for part in value.split(",") if part.strip()]
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"expected worker counts like 2,4,8, got {value!r}")
    return counts


@dataclass
class Round:
    """One measurement: N workers over the same due steps."""

    workers: int
    sent: int
    seconds: float
    duplicates: int
    per_worker: list[int]

    @property
    def throughput(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def _worker(url: str, batch: int, worker_id: str, start: Barrier, results: Any) -> None:
    """One dispatcher process: build everything, wait for the others, dispatch until done."""
    # Imported here, not at the top: ``benchmarks.dispatch`` imports this module for ``--workers``.
    from benchmarks.dispatch import NOW, SEQUENCES

    settings = Settings(
        database_url=url, sequences_dir=SEQUENCES, dispatch_batch_size=batch, secret_key="bench"
    )
    channels = null_channels(settings)
    dispatcher = Dispatcher(
        engine=make_engine(url),
        catalog=SequenceCatalog.open(SEQUENCES),
        channels=channels,
        settings=settings,
        worker_id=worker_id,
    )
    start.wait(timeout=START_TIMEOUT_S)
    report = dispatcher.dispatch_due(now=NOW)
    results.put((worker_id, report.total_sent))


def run_round(url: str, engine: Engine, *, workers: int, batch: int) -> Round:
    """Reset the enrollments, then time ``workers`` processes dispatching them."""
    from benchmarks.dispatch import reset

    reset(engine)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(workers + 1), context.Queue()
    processes = [
        context.Process(target=_worker, args=(url, batch, f"bench-{workers}-{n}", start, results))
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    start.wait(timeout=START_TIMEOUT_S)
    began = time.perf_counter()
    per_worker = [results.get()[1] for _ in processes]
    seconds = time.perf_counter() - began
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise SystemExit(f"{len(failed)} dispatcher process(es) failed: exit codes {failed}")
    return Round(workers, sum(per_worker), seconds, duplicates(engine, sum(per_worker)), per_worker)


def duplicates(engine: Engine, reported: int) -> int:
    """Extra ``sent`` rows per step, plus sends the workers reported beyond the rows written."""
    per_step = (
        select(func.count().label("n"))
        .where(OUTBOX.c.state == "sent")
        .group_by(OUTBOX.c.enrollment_id, OUTBOX.c.cycle, OUTBOX.c.step_id)
        .subquery()
    )
    with engine.connect() as conn:
        extra = conn.scalar(select(func.coalesce(func.sum(per_step.c.n - 1), 0)))
        rows = conn.scalar(select(func.count()).where(OUTBOX.c.state == "sent"))
    return int(extra or 0) + max(reported - int(rows or 0), 0)


def prepare(db: str | None, leads: int) -> tuple[str, Engine]:
    """A migrated database holding ``leads`` enrolled leads (a fresh SQLite file without ``db``)."""
    from benchmarks.dispatch import SEQUENCES, setup

    if db:
        upgrade(db)
        url, engine = db, make_engine(db)
        with engine.begin() as conn:
            for table in ("outbox", "variant_assignments", "enrollments", "leads"):
                conn.execute(text(f"DELETE FROM {table}"))
    else:
        url, engine = fresh_sqlite("dispatch_workers")
    setup(engine, leads, SequenceCatalog.open(SEQUENCES))
    return url, engine


def main_workers(args: argparse.Namespace) -> None:
    """Run one round per worker count in ``args.workers``; print throughput and duplicates per N."""
    counts = parse_workers(getattr(args, "workers", None) or list(DEFAULT_WORKERS))
    url, engine = prepare(getattr(args, "db", None), args.leads)
    rounds = [run_round(url, engine, workers=n, batch=getattr(args, "batch", 1000)) for n in counts]
    best = max(rounds, key=lambda r: r.throughput)
    lines = [f"dispatch with N worker processes on {safe_url(url)} ({args.leads:,} due steps each round)"]
    lines += [
        f"  N={r.workers}: {r.sent:,} sent in {r.seconds:.1f} s = {r.throughput:,.0f} steps/s, "
        f"duplicates {r.duplicates} (per worker: {', '.join(f'{n:,}' for n in r.per_worker)})"
        for r in rounds
    ]
    emit(
        getattr(args, "json", False),
        {
            "name": "dispatch_workers",
            "value": round(best.throughput),
            "unit": "steps/s",
            "workers": best.workers,
            "duplicates": sum(r.duplicates for r in rounds),
            "rounds": [asdict(r) | {"throughput": round(r.throughput)} for r in rounds],
        },
        lines,
    )
    if any(r.duplicates or r.sent != args.leads for r in rounds):
        raise SystemExit("duplicates or missing sends: see the figures above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file under var/bench)")
    parser.add_argument("--workers", type=parse_workers, default=list(DEFAULT_WORKERS))
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    main_workers(parser.parse_args())


if __name__ == "__main__":
    main()
