"""What one dispatch tick did, per channel and per reason: printed by the CLI, published as a
Prefect table artifact by the dispatch flow."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

#: The phases of a batch whose wall time a report keeps, in the order a batch runs them.
PHASES = ("claim", "read", "decide", "write", "mark", "send", "record")


@dataclass
class DispatchReport:
    """Counters of one tick. Keys are channels (``email``, ``sms``) or reasons (``window`` ...)."""

    claimed: int = 0
    batches: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    holdout: int = 0
    completed: int = 0
    retried: int = 0
    recovered: int = 0
    #: Dispatchers that stopped at their batch limit with a full last batch: more may be due.
    stopped_full: int = 0
    #: Wall seconds spent in each of ``PHASES`` (summed over the processes of a tick).
    seconds: dict[str, float] = field(default_factory=dict)

    def merge(self, other: DispatchReport) -> None:
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, dict):
                for key, value in theirs.items():
                    mine[key] = mine.get(key, 0.0) + value
            else:
                setattr(self, item.name, mine + theirs)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the wall time of the block to ``phase``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def per_step_us(self) -> dict[str, float]:
        """Microseconds per claimed step spent in each phase: where a tick's time went."""
        steps = max(self.claimed, 1)
        return {phase: self.seconds[phase] / steps * 1e6 for phase in PHASES if phase in self.seconds}

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    def rows(self) -> list[dict[str, str | int]]:
        """One row per (outcome, key), for a table artifact or a Rich table."""
        rows: list[dict[str, str | int]] = [
            {"outcome": "claimed", "key": "", "count": self.claimed},
            {"outcome": "holdout", "key": "", "count": self.holdout},
            {"outcome": "completed", "key": "", "count": self.completed},
        ]
        for name in ("sent", "failed", "unknown", "suppressed", "deferred", "skipped", "tasks", "exited"):
            counter: Counter[str] = getattr(self, name)
            rows.extend({"outcome": name, "key": key, "count": n} for key, n in sorted(counter.items()))
        return rows

    def summary(self) -> str:
        return (
            f"claimed {self.claimed}, sent {self.total_sent} ({_fmt(self.sent)}), "
            f"deferred {sum(self.deferred.values())} ({_fmt(self.deferred)}), "
            f"suppressed {sum(self.suppressed.values())}, failed {sum(self.failed.values())}, "
            f"unknown {sum(self.unknown.values())}, tasks {sum(self.tasks.values())}, "
            f"skipped {sum(self.skipped.values())}, exited {sum(self.exited.values())}, "
            f"holdout {self.holdout}, completed {self.completed}"
        )


def _fmt(counter: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "-"
