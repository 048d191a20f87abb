"""Wiring: build the engine, the catalog, the channels and the dispatcher from settings. The CLI,
the flows and the API all start here, so they run the same code path."""

from __future__ import annotations

from sqlalchemy import Engine

from channels.registry import build_channels
from models.claims import Shard
from models.db import make_engine, require_migrated
from sequences.catalog import SequenceCatalog
from spirale.dispatch import Dispatcher
from spirale.settings import Settings


def database(settings: Settings) -> Engine:
    """The engine for ``settings.database_url``, refusing to work on an unmigrated schema."""
    engine = make_engine(settings.database_url)
    require_migrated(engine)
    return engine


def dispatcher(settings: Settings, *, worker_id: str | None = None, shard: Shard | None = None) -> Dispatcher:
    """A dispatcher with the channels the settings select (local outbox without credentials),
    claiming only the enrollments of ``shard`` when one is given."""
    channels = {str(kind): channel for kind, channel in build_channels(settings).items()}
    built = Dispatcher(
        engine=database(settings),
        catalog=SequenceCatalog.open(settings.sequences_dir),
        channels=channels,
        settings=settings,
        shard=shard,
    )
    if worker_id:
        built.worker_id = worker_id
    return built
