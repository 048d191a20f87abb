"""The crash campaign: restart a dispatcher process over and over, killing it with SIGKILL at every
point of a send and at random points, then let it finish and audit what the provider received.

Each run is a fresh process (forked by :class:`DispatcherServer`) dispatching at a simulated
instant; the clock moves past the claim lease between runs, so the next run recovers what the dead
one left: expired claims, ``pending`` rows (resent), ``sending`` rows (held ``unknown``).
``unknown`` rows are reconciled from the provider's record every few runs, as the reconciliation
job would from provider events.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from tests.fakes.providers import FakeProviders
from tests.reliability.dispatcher_process import (
    AFTER_ACCEPTED,
    CRASH_POINTS,
    LEASE_SECONDS,
    RANDOM,
    DispatcherServer,
    Job,
    RunResult,
)
from tests.reliability.ledger import T0, Audit, audit, next_wakeup, quiescent, reconcile_from_provider

EXTERNAL = "external"  # killed from outside after a random delay, wherever the process happens to be
KILL_POINTS = (*CRASH_POINTS, RANDOM, EXTERNAL)
LEASE = timedelta(seconds=LEASE_SECONDS)
STEP = LEASE + timedelta(seconds=1)
RECONCILE_EVERY = 3
MAX_DRAIN_RUNS = 200


class CampaignError(AssertionError):
    """The campaign could not run as planned (a dispatcher failed, or the work never drained)."""


@dataclass
class CampaignFigures:
    """What a campaign did and what the provider received."""

    kills: int
    runs: int
    kills_by_point: Counter[str]
    audit: Audit
    drain_runs: int
    drain_wall_seconds: float
    drain_simulated: timedelta
    wall_seconds: float

    def lines(self) -> list[str]:
        a = self.audit
        points = ", ".join(f"{p} {self.kills_by_point[p]}" for p in KILL_POINTS)
        return [
            f"crash campaign: {self.kills} SIGKILLs in {self.runs} dispatcher runs ({points})",
            f"  due steps {a.expected}, send attempts (outbox rows) {a.attempts}, provider requests "
            f"{a.requests}, processed {a.processed}",
            f"  duplicates {a.duplicates}, losses {a.losses}, inconsistencies {len(a.problems)}",
            f"  time to drain after the last kill: {self.drain_wall_seconds:.2f} s wall, "
            f"{self.drain_simulated.total_seconds():.0f} s simulated, {self.drain_runs} clean runs",
            f"  campaign wall time {self.wall_seconds:.1f} s",
        ]


@dataclass
class CrashCampaign:
    """Kill a dispatcher ``kills`` times over a seeded ``relay`` workload, then drain and audit."""

    engine: Engine
    database_url: str
    fake: FakeProviders
    server: DispatcherServer
    kills: int = 56
    seed: int = 8
    batch_size: int = 3
    clock: datetime = T0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def run(self) -> CampaignFigures:
        started = time.perf_counter()
        kills, runs, by_point = 0, 0, Counter[str]()
        while kills < self.kills:
            if runs >= self.kills * 4:
                raise CampaignError(f"only {kills} kills in {runs} runs: the workload ran out")
            point = KILL_POINTS[runs % len(KILL_POINTS)]
            result = self._run_once(point)
            runs += 1
            if result.killed:
                kills += 1
                by_point[point] += 1
            elif result.error:
                raise CampaignError(f"a dispatcher run failed:\n{result.error}")
            if runs % RECONCILE_EVERY == 0:
                reconcile_from_provider(self.engine, self.fake, now=self.clock)
            self.clock += STEP
        drain_started, drain_clock = time.perf_counter(), self.clock
        drain_runs = self.drain()
        return CampaignFigures(
            kills=kills,
            runs=runs,
            kills_by_point=by_point,
            audit=audit(self.engine, self.fake),
            drain_runs=drain_runs,
            drain_wall_seconds=time.perf_counter() - drain_started,
            drain_simulated=self.clock - drain_clock,
            wall_seconds=time.perf_counter() - started,
        )

    def drain(self) -> int:
        """Run clean dispatchers (reconciling between runs) until nothing is left to do."""
        for runs in range(MAX_DRAIN_RUNS):
            reconcile_from_provider(self.engine, self.fake, now=self.clock)
            if quiescent(self.engine):
                return runs
            self.clock = max(self.clock + STEP, next_wakeup(self.engine, self.clock, LEASE))
            result = self.server.run([self.job()])[0]
            if result.error or result.killed:
                raise CampaignError(f"a clean dispatcher run failed:\n{result.error}")
        raise CampaignError(f"the work did not drain in {MAX_DRAIN_RUNS} clean runs")

    def job(self, crash_at: str | None = None, countdown: int = 1) -> Job:
        return Job(
            database_url=self.database_url,
            provider_url=self.fake.url,
            now=self.clock.isoformat(),
            crash_at=crash_at,
            countdown=countdown,
            batch_size=self.batch_size,
        )

    def _run_once(self, point: str) -> RunResult:
        if point == EXTERNAL:
            return self.server.run([self.job()], kill_after=self._rng.uniform(0.005, 0.08))[0]
        countdown = 1
        if point == RANDOM:
            countdown = self._rng.randint(1, 40)
        elif point == AFTER_ACCEPTED:
            countdown = self._rng.randint(1, self.batch_size)
        return self.server.run([self.job(point, countdown)])[0]
