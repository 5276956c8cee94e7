"""consent current state

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdp.db

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# consent_current holds, per (subject_id, purpose), a copy of the latest consent_record row by
# (at, id). A trigger keeps it in the inserting transaction whoever inserts; its upsert only
# replaces an older (at, record_id), so concurrent writers converge on the latest record.
_COLUMNS = "subject_id, purpose, record_id, state, notice_id, notice_version, separate, guardian, at"
_UPSERT = """
ON CONFLICT (subject_id, purpose) DO UPDATE SET
    record_id = excluded.record_id, state = excluded.state, notice_id = excluded.notice_id,
    notice_version = excluded.notice_version, separate = excluded.separate,
    guardian = excluded.guardian, at = excluded.at
WHERE excluded.at > consent_current.at
   OR (excluded.at = consent_current.at AND excluded.record_id > consent_current.record_id)
"""
# PostgreSQL: once per statement over its new rows (a bulk insert or COPY upserts in one go).
_PG_FUNCTION = f"""
CREATE FUNCTION consent_current_keep() RETURNS trigger AS $$
BEGIN
    INSERT INTO consent_current ({_COLUMNS})
    SELECT DISTINCT ON (n.subject_id, n.purpose)
        n.subject_id, n.purpose, n.id, n.state, n.notice_id, n.notice_version, n.separate,
        n.guardian IS NOT NULL, n.at
    FROM consent_record_new AS n
    ORDER BY n.subject_id, n.purpose, n.at DESC, n.id DESC
    {_UPSERT};
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
_PG_TRIGGER = (
    "CREATE TRIGGER consent_record_keeps_current AFTER INSERT ON consent_record"
    " REFERENCING NEW TABLE AS consent_record_new"
    " FOR EACH STATEMENT EXECUTE FUNCTION consent_current_keep()"
)
# SQLite has row triggers only.
_SQLITE_TRIGGER = f"""
CREATE TRIGGER consent_record_keeps_current AFTER INSERT ON consent_record
BEGIN
    INSERT INTO consent_current ({_COLUMNS})
    VALUES (NEW.subject_id, NEW.purpose, NEW.id, NEW.state, NEW.notice_id, NEW.notice_version,
            NEW.separate, NEW.guardian IS NOT NULL, NEW.at)
    {_UPSERT};
END
"""
_BACKFILL = f"""
INSERT INTO consent_current ({_COLUMNS})
SELECT {_COLUMNS} FROM (
    SELECT subject_id, purpose, id AS record_id, state, notice_id, notice_version, separate,
           guardian IS NOT NULL AS guardian, at,
           row_number() OVER (PARTITION BY subject_id, purpose ORDER BY at DESC, id DESC) AS rank
    FROM consent_record
) AS ranked
WHERE rank = 1
"""


def upgrade() -> None:
    op.create_table('consent_current',
    sa.Column('subject_id', sa.String(length=36), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('notice_id', sa.String(length=64), nullable=False),
    sa.Column('notice_version', sa.Integer(), nullable=False),
    sa.Column('separate', sa.Boolean(), nullable=False),
    sa.Column('guardian', sa.Boolean(), nullable=False),
    sa.Column('at', cdp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subject_id'], ['profile.id'], name=op.f('fk_consent_current_subject_id_profile'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subject_id', 'purpose', name=op.f('pk_consent_current'))
    )
    # The trigger first: on PostgreSQL creating it locks consent_record against inserts until
    # this transaction commits, so no record lands between the backfill and the trigger.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)
    op.execute(_BACKFILL)
    # Built after the backfill: one sort instead of an insert per row.
    with op.batch_alter_table('consent_current', schema=None) as batch_op:
        batch_op.create_index('ix_consent_current_purpose', ['purpose', 'subject_id', 'state', 'notice_id', 'notice_version', 'separate', 'guardian'], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS consent_record_keeps_current ON consent_record")
        op.execute("DROP FUNCTION IF EXISTS consent_current_keep()")
    else:
        op.execute("DROP TRIGGER IF EXISTS consent_record_keeps_current")
    with op.batch_alter_table('consent_current', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_current_purpose')

    op.drop_table('consent_current')
