"""lookup indexes: form submissions by email (and status), events by outbox message

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_submissions_email", "form_submissions", ["email", "status"], unique=False)
    op.create_index("ix_events_outbox", "events", ["outbox_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_outbox", table_name="events")
    op.drop_index("ix_submissions_email", table_name="form_submissions")
