"""segments definitions, snapshots and subject summaries

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdp.db


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DT = cdp.db.UTCDateTime(timezone=True)
# subject_summary's rings: 13 calendar months and 13 ISO weeks (see cdp.segments.models).
_SLOTS = 13


def _ring_columns() -> list[sa.Column]:
    columns: list[sa.Column] = []
    columns += [sa.Column(f"m{i}", sa.Integer(), nullable=True) for i in range(_SLOTS)]
    columns += [sa.Column(f"mr{i}", sa.Numeric(18, 2), nullable=True) for i in range(_SLOTS)]
    columns += [sa.Column(f"mo{i}", sa.Integer(), nullable=True) for i in range(_SLOTS)]
    columns += [sa.Column(f"w{i}", sa.Integer(), nullable=True) for i in range(_SLOTS)]
    columns += [sa.Column(f"wa{i}", sa.Integer(), nullable=True) for i in range(_SLOTS)]
    return columns


def upgrade() -> None:
    op.create_table(
        "segment",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("condition", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", _DT, nullable=False),
        sa.Column("updated_at", _DT, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_segment")),
    )
    op.create_table(
        "segment_member",
        sa.Column("segment_key", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=36), nullable=False),
        sa.Column("since", _DT, nullable=False),
        sa.PrimaryKeyConstraint("segment_key", "subject_id", name=op.f("pk_segment_member")),
    )
    with op.batch_alter_table("segment_member", schema=None) as batch_op:
        batch_op.create_index("ix_segment_member_subject_id", ["subject_id"], unique=False)

    op.create_table(
        "segment_change",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("segment_key", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=36), nullable=False),
        sa.Column("change", sa.String(length=8), nullable=False),
        sa.Column("at", _DT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_change")),
    )
    with op.batch_alter_table("segment_change", schema=None) as batch_op:
        batch_op.create_index(
            "ix_segment_change_segment_key_at", ["segment_key", "at"], unique=False
        )
        batch_op.create_index("ix_segment_change_subject_id", ["subject_id"], unique=False)

    op.create_table(
        "segment_refresh",
        sa.Column("segment_key", sa.String(length=64), nullable=False),
        sa.Column("refreshed_at", _DT, nullable=False),
        sa.Column("members", sa.BigInteger(), nullable=False),
        sa.Column("entered", sa.BigInteger(), nullable=False),
        sa.Column("left", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("segment_key", name=op.f("pk_segment_refresh")),
    )
    op.create_table(
        "subject_summary",
        sa.Column("subject_id", sa.String(length=36), nullable=False),
        sa.Column("first_seen", _DT, nullable=False),
        sa.Column("last_seen", _DT, nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("first_purchase", sa.Date(), nullable=True),
        sa.Column("last_purchase", sa.Date(), nullable=True),
        *_ring_columns(),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_subject_summary")),
    )
    with op.batch_alter_table("subject_summary", schema=None) as batch_op:
        batch_op.create_index("ix_subject_summary_first_seen", ["first_seen"], unique=False)
        batch_op.create_index("ix_subject_summary_last_seen", ["last_seen"], unique=False)
    _backfill_summaries()


def _backfill_summaries(chunk: int = 5000) -> None:
    """Summaries of the subjects already rolled up (a revenue-carrying rollup row counts its
    events as orders: subject_daily does not say which events carried revenue)."""
    from decimal import Decimal
    from typing import Any

    from cdp.segments.summary import SUMMARY, rows_for_insert, summary_rows

    bind = op.get_bind()
    daily = sa.table(
        "subject_daily",
        sa.column("subject_id", sa.String()),
        sa.column("day", sa.Date()),
        sa.column("name", sa.String()),
        sa.column("count", sa.Integer()),
        sa.column("revenue", sa.Numeric(18, 2)),
    )
    activity = sa.table(
        "subject_activity",
        sa.column("subject_id", sa.String()),
        sa.column("first_seen", _DT),
        sa.column("last_seen", _DT),
        sa.column("event_count", sa.BigInteger()),
    )
    seen = {
        r.subject_id: [r.first_seen, r.last_seen, r.event_count]
        for r in bind.execute(sa.select(activity))
    }
    cells: dict[Any, list[Any]] = {}
    purchases: dict[Any, int] = {}
    names = [c.name for c in SUMMARY.columns]

    def flush() -> None:
        rows = list(rows_for_insert(summary_rows(cells, seen, purchases)))
        if rows:
            bind.execute(SUMMARY.insert(), [{n: r.get(n) for n in names} for r in rows])
        cells.clear()
        purchases.clear()

    subjects, last = 0, None
    for r in bind.execute(sa.select(daily).order_by(daily.c.subject_id)):
        if r.subject_id not in seen:
            continue
        if r.subject_id != last:
            subjects, last = subjects + 1, r.subject_id
            if subjects % chunk == 0:
                flush()
        revenue = Decimal(r.revenue or 0)
        cells[(r.subject_id, r.day, r.name)] = [r.count, revenue]
        if revenue > 0:
            purchases[(r.subject_id, r.day)] = purchases.get((r.subject_id, r.day), 0) + r.count
    flush()


def downgrade() -> None:
    with op.batch_alter_table("subject_summary", schema=None) as batch_op:
        batch_op.drop_index("ix_subject_summary_last_seen")
        batch_op.drop_index("ix_subject_summary_first_seen")
    op.drop_table("subject_summary")
    op.drop_table("segment_refresh")
    with op.batch_alter_table("segment_change", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_change_subject_id")
        batch_op.drop_index("ix_segment_change_segment_key_at")
    op.drop_table("segment_change")
    with op.batch_alter_table("segment_member", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_member_subject_id")
    op.drop_table("segment_member")
    op.drop_table("segment")
