"""The dispatch engine: claim due enrollments, decide, write the outbox, send, record, advance.

``dispatch_due(now=...)`` is the one entry point; see ``engine.py`` for the transaction layout that
makes every send happen at most once, and ``recovery.py`` for what happens after a crash.
"""

from spirale.dispatch.engine import Dispatcher, dispatch_due
from spirale.dispatch.report import DispatchReport

__all__ = ["DispatchReport", "Dispatcher", "dispatch_due"]
