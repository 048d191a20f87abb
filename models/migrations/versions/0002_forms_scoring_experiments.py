"""form submissions, score ledger, experiment promotions, lead scoring columns

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("fit_score", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("engagement_score", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("engagement_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("disqualified_reason", sa.String(), nullable=True))
        batch.add_column(sa.Column("last_purchase_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "form_submissions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("form_id", sa.String(), nullable=False),
        sa.Column("submission_key", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("submission_key"),
    )
    op.create_index("ix_submissions_pending", "form_submissions", ["status", "received_at"], unique=False)
    op.create_table(
        "score_ledger",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"]),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_score_ledger_lead", "score_ledger", ["lead_id", "created_at"], unique=False)
    op.create_table(
        "experiment_promotions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sequence_name", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("keep_holdout", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_promotions_step",
        "experiment_promotions",
        ["sequence_name", "step_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_promotions_step", table_name="experiment_promotions")
    op.drop_table("experiment_promotions")
    op.drop_index("ix_score_ledger_lead", table_name="score_ledger")
    op.drop_table("score_ledger")
    op.drop_index("ix_submissions_pending", table_name="form_submissions")
    op.drop_table("form_submissions")
    with op.batch_alter_table("leads") as batch:
        for column in (
            "last_purchase_at",
            "disqualified_reason",
            "engagement_at",
            "engagement_score",
            "fit_score",
        ):
            batch.drop_column(column)
