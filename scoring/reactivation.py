"""Reactivation: "wake the dead and the non-clickers" with an irresistible offer.

The ``audience:`` block of a sequence (``sequences.audience.AudienceSpec``) says who: dormant
prospects, non-clickers, former customers. Whoever matches is then screened out when hot,
disqualified, of an excluded status, already live in the sequence, contacted in the last K days, or
unreachable on the sequence's first channel (no address, no consent, suppressed). The rest is
enrolled, and every selected lead carries the reason it was chosen, for the run's table artifact.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, or_, select

from models.db import read_only_connection
from models.suppressions import address_hash, suppressed_hashes
from models.tables import (
    LIVE_ENROLLMENT_STATES,
    Enrollment,
    Event,
    EventType,
    Lead,
    OutboxMessage,
    OutboxState,
)
from sequences.audience import AudienceSpec, parse_audience
from sequences.catalog import SequenceCatalog
from sequences.schema import Sequence
from spirale.enrollment import enroll_leads
from spirale.errors import SequenceError

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
CHUNK = 5000
PROSPECT_STATUSES = ("warm", "cold")
CUSTOMER_STATUSES = ("customer", "former_customer")
CONTACT_STATES = (OutboxState.PENDING, OutboxState.SENDING, OutboxState.SENT, OutboxState.UNKNOWN)


@dataclass(frozen=True)
class Selected:
    """A lead chosen for the campaign, and why."""

    lead_id: uuid.UUID
    reason: str
    email: str | None = None
    status: str = ""


@dataclass
class AudienceSelection:
    """The leads selected, and how many matching leads were screened out, by reason."""

    selected: list[Selected] = field(default_factory=list)
    screened_out: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def excluded(self) -> Counter[str]:
        return Counter(self.screened_out.values())


def select_audience(
    conn: Connection, *, sequence: Sequence, spec: AudienceSpec, now: datetime
) -> list[Selected]:
    """The leads ``spec`` selects for ``sequence`` at ``now``, each with its reason."""
    return screen_audience(conn, sequence=sequence, spec=spec, now=now).selected


def screen_audience(
    conn: Connection, *, sequence: Sequence, spec: AudienceSpec, now: datetime
) -> AudienceSelection:
    """Like :func:`select_audience`, also counting the leads screened out and why."""
    reasons = _matches(conn, spec, now)
    leads = _lead_rows(conn, list(reasons))
    blocked = _blocked(conn, sequence, spec, leads, now)
    screened = AudienceSelection()
    # Ordered by id (random UUIDs): a max_leads cap takes an unbiased sample, the same on a re-run.
    for lead_id in sorted(reasons, key=str):
        lead = leads[lead_id]
        why_not = _status_block(lead, spec) or blocked.get(lead_id)
        if why_not:
            screened.screened_out[lead_id] = why_not
        elif spec.max_leads is not None and len(screened.selected) >= spec.max_leads:
            screened.screened_out[lead_id] = "over max_leads"
        else:
            reason = "; ".join(reasons[lead_id])
            screened.selected.append(Selected(lead_id, reason, lead["email"], lead["status"]))
    return screened


# -- who matches ------------------------------------------------------------------------------------
def _matches(conn: Connection, spec: AudienceSpec, now: datetime) -> dict[uuid.UUID, list[str]]:
    reasons: dict[uuid.UUID, list[str]] = {}
    if spec.dormant_days is not None:
        for lead_id, since in _quiet(
            conn, LEADS.c.last_engaged_at, PROSPECT_STATUSES, now, spec.dormant_days
        ):
            reasons.setdefault(lead_id, []).append(f"dormant: no engagement for {_days(now, since)} days")
    if spec.min_messages_without_click is not None:
        for lead_id, count in _non_clickers(conn, spec, now):
            reasons.setdefault(lead_id, []).append(f"non-clicker: {count} messages without a click")
    if spec.former_customers_inactive_days is not None:
        days = spec.former_customers_inactive_days
        for lead_id, since in _quiet(conn, LEADS.c.last_purchase_at, CUSTOMER_STATUSES, now, days):
            reasons.setdefault(lead_id, []).append(
                f"former customer: no purchase for {_days(now, since)} days"
            )
    if spec.customer_class is not None:
        query = select(LEADS.c.id).where(
            LEADS.c.status == "customer", LEADS.c.customer_class == spec.customer_class
        )
        for (lead_id,) in conn.execute(query):
            reasons.setdefault(lead_id, []).append(f"customer of class {spec.customer_class}")
    return reasons


def _days(now: datetime, since: datetime) -> int:
    return (now - since).days


def _quiet(
    conn: Connection, column: Any, statuses: Iterable[str], now: datetime, days: int
) -> list[tuple[uuid.UUID, datetime]]:
    """Leads of ``statuses`` whose ``column`` (or creation, when never set) is ``days`` old."""
    since = func.coalesce(column, LEADS.c.created_at)
    query = select(LEADS.c.id, since).where(
        LEADS.c.status.in_(list(statuses)), since <= now - timedelta(days=days)
    )
    return [(lead_id, at) for lead_id, at in conn.execute(query)]


def _non_clickers(conn: Connection, spec: AudienceSpec, now: datetime) -> list[tuple[uuid.UUID, int]]:
    """Leads sent at least M messages since their last click, each at least N days ago."""
    last_click = (
        select(EVENTS.c.lead_id, func.max(EVENTS.c.occurred_at).label("at"))
        .where(EVENTS.c.type == EventType.CLICK.value, EVENTS.c.lead_id.is_not(None))
        .group_by(EVENTS.c.lead_id)
        .subquery()
    )
    count = func.count(OUTBOX.c.id)
    query = (
        select(OUTBOX.c.lead_id, count)
        .select_from(OUTBOX.outerjoin(last_click, last_click.c.lead_id == OUTBOX.c.lead_id))
        .where(
            OUTBOX.c.state == OutboxState.SENT.value,
            OUTBOX.c.transactional.is_(False),
            OUTBOX.c.sent_at <= now - timedelta(days=spec.no_click_days),
            or_(last_click.c.at.is_(None), OUTBOX.c.sent_at > last_click.c.at),
        )
        .group_by(OUTBOX.c.lead_id)
        .having(count >= spec.min_messages_without_click)
    )
    return [(lead_id, n) for lead_id, n in conn.execute(query)]


# -- who is screened out ------------------------------------------------------------------------------
def _lead_rows(conn: Connection, lead_ids: list[uuid.UUID]) -> dict[uuid.UUID, Mapping[str, Any]]:
    names = (
        "id",
        "email",
        "phone",
        "status",
        "consent_email",
        "consent_sms",
        "disqualified_reason",
        "last_contacted_at",
    )
    columns = [LEADS.c[name] for name in names]
    rows: dict[uuid.UUID, Mapping[str, Any]] = {}
    for chunk in _chunks(lead_ids):
        for row in conn.execute(select(*columns).where(LEADS.c.id.in_(chunk))).mappings():
            rows[row["id"]] = dict(row)
    return rows


def _chunks(items: list[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    return (items[start : start + CHUNK] for start in range(0, len(items), CHUNK))


def _status_block(lead: Mapping[str, Any], spec: AudienceSpec) -> str | None:
    if lead["status"] in spec.excluded_statuses:
        return f"status {lead['status']}"
    if lead["disqualified_reason"]:
        return "disqualified"
    return None


def _blocked(
    conn: Connection,
    sequence: Sequence,
    spec: AudienceSpec,
    leads: Mapping[uuid.UUID, Mapping[str, Any]],
    now: datetime,
) -> dict[uuid.UUID, str]:
    """Lead id -> why it may not be enrolled now (first reason found)."""
    ids = list(leads)
    blocked: dict[uuid.UUID, str] = {}
    for lead_id in _live_in(conn, sequence.name, ids):
        blocked[lead_id] = "already enrolled"
    days = spec.exclude_contacted_within_days
    if days:
        for lead_id in _contacted_since(conn, ids, leads, now - timedelta(days=days)):
            blocked.setdefault(lead_id, f"contacted in the last {days} days")
    for lead_id, why in _unreachable(conn, sequence, leads).items():
        blocked.setdefault(lead_id, why)
    return blocked


def _live_in(conn: Connection, sequence_name: str, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    live: set[uuid.UUID] = set()
    for chunk in _chunks(ids):
        query = select(ENROLLMENTS.c.lead_id).where(
            ENROLLMENTS.c.lead_id.in_(chunk),
            ENROLLMENTS.c.sequence_name == sequence_name,
            ENROLLMENTS.c.state.in_(LIVE_ENROLLMENT_STATES),
        )
        live.update(conn.execute(query).scalars())
    return live


def _contacted_since(
    conn: Connection, ids: list[uuid.UUID], leads: Mapping[uuid.UUID, Mapping[str, Any]], since: datetime
) -> set[uuid.UUID]:
    contacted = {
        lead_id
        for lead_id, lead in leads.items()
        if lead["last_contacted_at"] and lead["last_contacted_at"] > since
    }
    for chunk in _chunks(ids):
        query = select(OUTBOX.c.lead_id).where(
            OUTBOX.c.lead_id.in_(chunk),
            OUTBOX.c.created_at > since,
            OUTBOX.c.transactional.is_(False),
            OUTBOX.c.state.in_([state.value for state in CONTACT_STATES]),
        )
        contacted.update(conn.execute(query).scalars())
    return contacted


def _unreachable(
    conn: Connection, sequence: Sequence, leads: Mapping[uuid.UUID, Mapping[str, Any]]
) -> dict[uuid.UUID, str]:
    """Leads the sequence's first message cannot reach: no address, no consent, suppressed."""
    channel = next((step.channel.value for step in sequence.steps if not step.channel.is_manual), None)
    if channel is None:
        return {}
    column, label = ("email", "email") if channel == "email" else ("phone", "phone")
    found: dict[uuid.UUID, str] = {}
    hashes: dict[uuid.UUID, str] = {}
    for lead_id, lead in leads.items():
        if not lead[column]:
            found[lead_id] = f"no {label}"
        elif not lead[f"consent_{channel}"]:
            found[lead_id] = f"no {channel} consent"
        else:
            hashes[lead_id] = address_hash(channel, lead[column])
    suppressed = suppressed_hashes(conn, channel=channel, hashes=set(hashes.values())) if hashes else set()
    found.update({lead_id: f"{channel} suppressed" for lead_id, h in hashes.items() if h in suppressed})
    return found


# -- the run -------------------------------------------------------------------------------------------------
@dataclass
class ReactivationReport:
    """One reactivation run: who was selected and why, who was screened out, who got enrolled."""

    sequence: str
    now: datetime
    selected: list[Selected]
    excluded: Counter[str]
    enrolled: int = 0
    already: int = 0

    def rows(self, limit: int | None = 1000) -> list[dict[str, str]]:
        """ "Who was selected and why", one row per lead (the first ``limit``), for a table artifact."""
        chosen = self.selected if limit is None else self.selected[:limit]
        return [
            {"lead_id": str(s.lead_id), "email": s.email or "", "status": s.status, "reason": s.reason}
            for s in chosen
        ]

    def exclusion_rows(self) -> list[dict[str, str | int]]:
        """How many matching leads were screened out, by reason."""
        return [{"excluded because": why, "leads": n} for why, n in sorted(self.excluded.items())]

    def summary(self) -> str:
        excluded = ", ".join(f"{why} {n}" for why, n in sorted(self.excluded.items())) or "none"
        return (
            f"{self.sequence}: selected {len(self.selected)}, enrolled {self.enrolled}, "
            f"already enrolled {self.already}; screened out: {excluded}"
        )


def run_reactivation(
    engine: Engine, *, now: datetime, catalog: SequenceCatalog, sequence_name: str
) -> ReactivationReport:
    """Select the audience of ``sequence_name`` at ``now`` and enroll it (idempotent: a lead already
    live in the sequence is left alone). Raises SequenceError when the sequence has no audience."""
    sequence = catalog.get(sequence_name)
    if sequence.audience is None:
        raise SequenceError(f"sequence {sequence_name!r} has no audience: block: nothing selects its leads")
    spec = parse_audience(sequence.audience, sequence=sequence_name)
    with read_only_connection(engine) as conn:
        screened = screen_audience(conn, sequence=sequence, spec=spec, now=now)
    report = ReactivationReport(sequence_name, now, screened.selected, screened.excluded)
    with engine.begin() as conn:
        result = enroll_leads(
            conn,
            lead_ids=[s.lead_id for s in screened.selected],
            sequence=sequence,
            version=catalog.version(sequence_name),
            now=now,
        )
    report.enrolled, report.already = result.enrolled, result.already
    return report
