"""audit deferred chain

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdp.db  # noqa: F401

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# cdp.audit.chain.format_time() in SQL: RFC 3339 UTC with microseconds.
_TIME_TEXT = """
CREATE FUNCTION audit_time_text(at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$
"""
# PostgreSQL: an append (cdp.audit.service.append_many) only INSERTs into audit_pending; this
# deferred trigger chains each row at COMMIT, inside the server, so the chain lock is held for
# the commit only, never across a client round trip. It takes the lock migration 0005's
# audit_chain_head() takes (same key), reads the head in a statement of its own (in READ
# COMMITTED it sees every append committed before the lock was granted), sets `at` under the
# lock (so times follow sequence order) and hashes as cdp.audit.chain does: SHA-256 of
# prev_hash's bytes, then each field's 8-byte big-endian length and UTF-8 text; the fields
# after `at` arrive already encoded in `tail`. SECURITY DEFINER: it runs as the owner, so the
# application role needs neither DELETE on audit_pending nor any right on audit_entry beyond
# INSERT; its search_path is pinned to this schema (pg_temp last) so that no caller's object
# can stand in for the tables it names.
_CHAIN_PENDING = """
CREATE FUNCTION audit_chain_pending() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    head_seq bigint;
    head_hash varchar;
    stamp timestamptz;
    seq_text text;
    at_text text;
BEGIN
    PERFORM pg_advisory_xact_lock(3449425175);  -- 0x0CD9A0D17
    SELECT e.seq, e.hash INTO head_seq, head_hash FROM audit_entry e ORDER BY e.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
    END IF;
    stamp := clock_timestamp();
    seq_text := (head_seq + 1)::text;
    at_text := audit_time_text(stamp);
    INSERT INTO audit_entry (seq, at, actor, organisation, action, subject, purpose, fields,
        decision, code, request_id, policy_version, detail, prev_hash, hash)
    VALUES (head_seq + 1, stamp, NEW.actor, NEW.organisation, NEW.action, NEW.subject,
        NEW.purpose, NEW.fields, NEW.decision, NEW.code, NEW.request_id, NEW.policy_version,
        NEW.detail, head_hash, encode(sha256(decode(head_hash, 'hex')
            || int8send(octet_length(seq_text)::bigint) || convert_to(seq_text, 'UTF8')
            || int8send(octet_length(at_text)::bigint) || convert_to(at_text, 'UTF8')
            || NEW.tail), 'hex'));
    DELETE FROM audit_pending WHERE id = NEW.id;
    RETURN NULL;
END
$$
"""
_TRIGGERS = (
    "CREATE CONSTRAINT TRIGGER audit_pending_chain AFTER INSERT ON audit_pending"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_chain_pending()",
    # DELETE stays allowed (the chain trigger needs it; `cdp db grant` leaves the application
    # role none): the trigger chains the row as inserted, even one deleted before COMMIT.
    "CREATE TRIGGER audit_pending_append_only BEFORE UPDATE OR TRUNCATE ON audit_pending"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # UNLOGGED on PostgreSQL: a row never outlives its transaction, so a crash loses nothing.
    op.create_table('audit_pending',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('organisation', sa.String(length=200), nullable=True),
    sa.Column('action', sa.String(length=80), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=True),
    sa.Column('purpose', sa.String(length=64), nullable=True),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('policy_version', sa.String(length=80), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('tail', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_pending')),
    prefixes=['UNLOGGED'] if postgres else []
    )
    if postgres:
        bind = op.get_bind()
        schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
        op.execute(_TIME_TEXT)
        op.execute(
            _CHAIN_PENDING.format(schema=bind.dialect.identifier_preparer.quote_schema(schema))
        )
        for statement in _TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_pending_append_only ON audit_pending")
        op.execute("DROP TRIGGER audit_pending_chain ON audit_pending")
        op.execute("DROP FUNCTION audit_chain_pending()")
        op.execute("DROP FUNCTION audit_time_text(timestamptz)")
    op.drop_table('audit_pending')
