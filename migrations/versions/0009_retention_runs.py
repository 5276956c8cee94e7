"""retention runs

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdp.db


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_run",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("policy_version", sa.String(length=80), nullable=False),
        sa.Column("started_at", cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_run")),
    )
    op.create_index(
        op.f("ix_retention_run_started_at"), "retention_run", ["started_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_retention_run_started_at"), table_name="retention_run")
    op.drop_table("retention_run")
