"""rights requests and customer verification

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdp.db


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'rights_request',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('subject_id', sa.String(length=36), nullable=False),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('submitted_by', sa.String(length=16), nullable=False),
        sa.Column('actor', sa.String(length=80), nullable=False),
        sa.Column('relation', sa.String(length=32), nullable=True),
        sa.Column('evidence', sa.Text(), nullable=True),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('patch', sa.Text(), nullable=True),
        sa.Column('received_at', cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('verified_at', cdp.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('started_at', cdp.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('due_at', cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('completed_at', cdp.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('extended', sa.Boolean(), nullable=False),
        sa.Column('extension_reason', sa.Text(), nullable=True),
        sa.Column('rejection_reason', sa.Text(), nullable=True),
        sa.Column('result', sa.JSON(none_as_null=True), nullable=True),
        sa.Column('updated_at', cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rights_request')),
    )
    with op.batch_alter_table('rights_request', schema=None) as batch_op:
        batch_op.create_index(
            'ix_rights_request_status_due_at', ['status', 'due_at'], unique=False
        )
        batch_op.create_index(
            'ix_rights_request_subject_id_received_at', ['subject_id', 'received_at'], unique=False
        )

    op.create_table(
        'verification_code',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('identifier_index', sa.String(length=64), nullable=False),
        sa.Column('subject_id', sa.String(length=36), nullable=True),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', cdp.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('consumed_at', cdp.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_verification_code')),
    )
    with op.batch_alter_table('verification_code', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_verification_code_expires_at'), ['expires_at'], unique=False
        )
        batch_op.create_index(
            'ix_verification_code_identifier_created_at',
            ['identifier_index', 'created_at'],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f('ix_verification_code_subject_id'), ['subject_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('verification_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verification_code_subject_id'))
        batch_op.drop_index('ix_verification_code_identifier_created_at')
        batch_op.drop_index(batch_op.f('ix_verification_code_expires_at'))
    op.drop_table('verification_code')
    with op.batch_alter_table('rights_request', schema=None) as batch_op:
        batch_op.drop_index('ix_rights_request_subject_id_received_at')
        batch_op.drop_index('ix_rights_request_status_due_at')
    op.drop_table('rights_request')
