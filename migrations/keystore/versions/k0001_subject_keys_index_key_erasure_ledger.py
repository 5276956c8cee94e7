"""key store: subject keys, index key, erasure ledger

Revision ID: k0001
Revises:
Create Date: 2026-11-25 11:59:02.232841
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdp.db

revision: str = "k0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("erased_at", cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure")),
    )
    with op.batch_alter_table("erasure", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erasure_erased_at"), ["erased_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_erasure_subject_id"), ["subject_id"], unique=False)

    op.create_table(
        "index_key",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rewrapped_at", cdp.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_index_key")),
    )
    op.create_table(
        "subject_key",
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rewrapped_at", cdp.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_subject_key")),
    )
    with op.batch_alter_table("subject_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subject_key_kek_id"), ["kek_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("subject_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_key_kek_id"))

    op.drop_table("subject_key")
    op.drop_table("index_key")
    with op.batch_alter_table("erasure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_subject_id"))
        batch_op.drop_index(batch_op.f("ix_erasure_erased_at"))

    op.drop_table("erasure")
