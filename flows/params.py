"""The parameters of every flow, as Pydantic models (the Prefect UI renders them as forms), and the
run names built from them.

Every flow takes its clock as a parameter: ``now`` is ``None`` for "the real time", or an instant
so that tests, the demo and an operator replaying a tick can travel in time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.claims import MAX_SHARDS, Shard
from spirale.clock import utcnow
from spirale.settings import Settings

RUN_NAME_FORMAT = "%Y-%m-%dT%H:%M"
Metric = Literal["sent", "delivered", "opens", "clicks", "replies", "meetings", "conversions"]
Detail = Callable[[Mapping[str, Any]], str | None]


class TickParams(BaseModel):
    """What every flow accepts: the instant it runs at (default: the real time)."""

    model_config = ConfigDict(extra="forbid")

    now: datetime | None = Field(default=None, description="ISO-8601 instant to run at; empty = now")

    def instant(self) -> datetime:
        """``now`` as an aware UTC instant, or the real time when not given."""
        if self.now is None:
            return utcnow()
        return self.now if self.now.tzinfo else self.now.replace(tzinfo=UTC)


class DispatchParams(TickParams):
    """One dispatch tick: claimed due steps are processed in a few batch tasks."""

    steps_per_task: int = Field(
        default=20_000, ge=1, le=1_000_000, description="due steps one task handles (in batches)"
    )
    max_tasks: int = Field(default=50, ge=1, le=1_000, description="stop the tick after this many tasks")
    shard: int | None = Field(
        default=None, ge=0, description="the shard this run claims, 0 to shards - 1 (with shards > 1)"
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=MAX_SHARDS,
        description="split due steps among this many deployments by enrollment id; 1 = no split",
    )

    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="dispatcher processes inside this run, each on its part of the (shard's) due steps; "
        "one per core pays on a large backlog, each process takes about a second to start",
    )

    @model_validator(mode="after")
    def _check_shard(self) -> DispatchParams:
        if self.shards > 1 and self.shard is None:
            raise ValueError(f"shards={self.shards} needs a shard index between 0 and {self.shards - 1}")
        if self.shards * self.processes > MAX_SHARDS:
            raise ValueError(
                f"shards={self.shards} x processes={self.processes} splits the due steps "
                f"{self.shards * self.processes} ways; at most {MAX_SHARDS}"
            )
        if self.shard is not None and self.shard >= self.shards:
            raise ValueError(
                f"shard={self.shard} is out of range: with shards={self.shards} "
                f"the index must be between 0 and {self.shards - 1}"
            )
        return self

    def claim_shard(self) -> Shard | None:
        """The shard this run claims, or ``None`` when the due steps are not split."""
        if self.shards == 1:
            return None
        assert self.shard is not None  # checked by the validator
        return Shard(index=self.shard, count=self.shards)


class IntakeParams(TickParams):
    """One intake run: the submission that triggered it, then anything else still waiting."""

    form_id: str | None = Field(default=None, max_length=100)
    submission_id: str | None = Field(default=None, max_length=128)
    limit: int = Field(default=500, ge=1, le=100_000, description="submissions taken per run at most")


class EventsParams(TickParams):
    """The stored webhook events, applied in passes of ``limit`` events (one task each)."""

    limit: int = Field(default=5_000, ge=1, le=100_000, description="events applied per pass")
    max_passes: int = Field(default=20, ge=1, le=1_000)


class ReconcileParams(TickParams):
    """One pass over the outbox rows whose outcome is unknown."""

    grace_hours: float = Field(
        default=24.0, gt=0, le=24 * 30, description="after this long with no evidence, a message is failed"
    )
    limit: int = Field(default=5_000, ge=1, le=100_000)


class ScoringParams(TickParams):
    """The nightly rescoring (decay, thresholds) and the hand-back of finished sales cadences."""


class ReactivationParams(TickParams):
    """The weekly reactivation campaigns: each sequence's audience is selected and enrolled."""

    sequences: list[str] = Field(default_factory=lambda: ["reactivation-offer"], min_length=1)


class ABReviewParams(TickParams):
    """The daily A/B review; ``experiments`` empty = every experiment with a holdout."""

    experiments: list[str] = Field(default_factory=list, description="sequence/step or sequence")
    metric: Literal["sent", "delivered", "opens", "clicks", "replies", "meetings", "conversions"] = (
        "conversions"
    )
    window_days: int = Field(default=30, ge=1, le=365, description="attribution window after the send")
    auto_promote: bool = Field(
        default=False, description="promote a winner once the sample guard and the threshold are met"
    )
    threshold: float = Field(default=0.95, gt=0.5, lt=1.0, description="probability to beat the holdout")


class HygieneParams(TickParams):
    """The retention purge (CNIL): prospects who initiated no contact for ``years`` are removed."""

    years: int = Field(default=3, ge=1, le=20, description="retention after the last contact the lead made")
    dry_run: bool = Field(default=False, description="count what would go, change nothing")


def load_settings() -> Settings:
    """The settings of this run, read from the environment each time (a served flow run is a
    fresh process; in-process runs in tests see the environment they set)."""
    return Settings()


def run_namer(flow: str, *, detail: Detail | None = None, suffix: Detail | None = None) -> Callable[[], str]:
    """A ``flow_run_name`` callable: ``<flow>-2026-12-04T09:00`` (UTC) from the run's ``now``, with
    ``detail`` before the instant and ``suffix`` after it when they give one."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = _params_dict(flow_run.parameters.get("params"))
        instant = TickParams.model_validate({"now": params.get("now")}).instant()
        extra = detail(params) if detail else None
        stamp = instant.astimezone(UTC).strftime(RUN_NAME_FORMAT)
        base = f"{flow}-{extra}-{stamp}" if extra else f"{flow}-{stamp}"
        tail = suffix(params) if suffix else None
        return f"{base}-{tail}" if tail else base

    return name


def shard_suffix(params: Mapping[str, Any]) -> str | None:
    """``shard-1of2`` for a sharded dispatch run (index counted from 0), nothing otherwise."""
    shards, shard = params.get("shards") or 1, params.get("shard")
    if not isinstance(shards, int) or shards <= 1 or not isinstance(shard, int):
        return None
    return f"shard-{shard}of{shards}"


def _params_dict(value: object) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, Mapping):
        return dict(value)
    return {}
