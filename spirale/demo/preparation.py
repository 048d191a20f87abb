"""Setting the demo up: its folder (a fresh database each run, or the kept one continued), the
settings its flows read, and the CRM base imported before the first simulated day."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, Table, func, select

from channels.registry import LOCAL_OUTBOX
from models.db import dispose_engine, make_engine, upgrade
from models.leads import bulk_insert_leads
from models.tables import FormSubmission, OutboxMessage
from scoring.rules import ScoringRules
from scoring.team import Team
from sequences.catalog import SequenceCatalog
from spirale.demo.population import Population
from spirale.lead_import import ImportReport, import_leads
from spirale.settings import Settings

PARIS = ZoneInfo("Europe/Paris")
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
SUBMISSIONS: Table = FormSubmission.__table__  # type: ignore[attr-defined]
DATABASE = "spirale.db"
CRM_SOURCE = "crm"


def demo_settings(base: Settings, folder: Path) -> Settings:
    """``base`` pointed at the demo's database and outbox, both channels forced to the local
    outbox (credentials in ``.env`` must never turn the demo into a real campaign)."""
    return base.model_copy(
        update={
            "database_url": f"sqlite:///{(folder / DATABASE).resolve()}",
            "outbox_dir": (folder / "outbox").resolve(),
            "email_channel": LOCAL_OUTBOX,
            "sms_channel": LOCAL_OUTBOX,
        }
    )


def flow_environment(settings: Settings) -> dict[str, str]:
    """The variables the flows read their settings from (``flows.params.load_settings``)."""
    return {
        "SPIRALE_DATABASE_URL": settings.database_url,
        "SPIRALE_OUTBOX_DIR": str(settings.outbox_dir),
        "SPIRALE_SEQUENCES_DIR": str(settings.sequences_dir),
        "SPIRALE_EMAIL_CHANNEL": settings.email_channel,
        "SPIRALE_SMS_CHANNEL": settings.sms_channel,
        "SPIRALE_SECRET_KEY": settings.secret_key.get_secret_value(),
    }


@contextmanager
def exported(variables: Mapping[str, str]) -> Iterator[None]:
    """``variables`` in the process environment for the block, then the previous values back."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def prepare_folder(folder: Path, *, keep: bool) -> bool:
    """Empty the demo's database and outbox unless ``keep`` (the Prefect run history stays);
    returns whether a kept database is continued."""
    database = folder / DATABASE
    if keep and database.exists():
        return True
    url = f"sqlite:///{database.resolve()}"
    dispose_engine(url)
    for path in folder.glob(f"{DATABASE}*"):
        path.unlink()
    shutil.rmtree(folder / "outbox", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return False


def open_database(settings: Settings) -> Engine:
    """The demo database, migrated to the newest schema."""
    upgrade(settings.database_url)
    return make_engine(settings.database_url)


def resume_day(engine: Engine, default: date) -> date:
    """The first day after everything a kept database has recorded (``default`` when empty)."""
    with engine.connect() as conn:
        latest = [
            conn.execute(select(func.max(SUBMISSIONS.c.received_at))).scalar_one_or_none(),
            conn.execute(select(func.max(OUTBOX.c.created_at))).scalar_one_or_none(),
        ]
    known = [_aware(value) for value in latest if value is not None]
    if not known:
        return default
    return max(known).astimezone(PARIS).date() + timedelta(days=1)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def midnight(day: date) -> datetime:
    """The start of ``day`` in Paris, as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=PARIS).astimezone(UTC)


def import_base(
    engine: Engine,
    population: Population,
    *,
    now: datetime,
    rules: ScoringRules,
    catalog: SequenceCatalog,
    team: Team,
) -> ImportReport:
    """The CRM on day one: customers and former customers through the lead import (each
    customer goes on its class's contact policy), then the long-silent prospects as the CRM
    has kept them since they were met (back-dated, on no track any more)."""
    report = import_leads(
        engine, rows=population.customers, source=CRM_SOURCE, now=now, rules=rules, catalog=catalog, team=team
    )
    with engine.begin() as conn:
        bulk_insert_leads(conn, population.dormant, now=now)
    return report
