"""drop subject_activity: subject_summary holds first/last seen and the event count

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 17:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdp.db

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subject_activity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_activity_last_seen"))
    op.drop_table("subject_activity")


def downgrade() -> None:
    op.create_table(
        "subject_activity",
        sa.Column("subject_id", sa.String(length=36), nullable=False),
        sa.Column("first_seen", cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_subject_activity")),
    )
    with op.batch_alter_table("subject_activity", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subject_activity_last_seen"), ["last_seen"], unique=False
        )
    # Rebuilt from the summaries that replaced it.
    op.execute(
        "INSERT INTO subject_activity (subject_id, first_seen, last_seen, event_count)"
        " SELECT subject_id, first_seen, last_seen, events FROM subject_summary"
    )
