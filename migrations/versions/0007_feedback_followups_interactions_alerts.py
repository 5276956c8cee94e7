"""feedback, follow-ups, interactions and alerts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdp.db


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DT = cdp.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('feedback',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('subject_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=True),
    sa.Column('csat', sa.Integer(), nullable=True),
    sa.Column('nps', sa.Integer(), nullable=True),
    sa.Column('comment_sealed', sa.Text(), nullable=True),
    sa.Column('answers_sealed', sa.Text(), nullable=True),
    sa.Column('resolution_sealed', sa.Text(), nullable=True),
    sa.Column('assignee', sa.String(length=80), nullable=True),
    sa.Column('reopen_count', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', _DT, nullable=False),
    sa.Column('updated_at', _DT, nullable=False),
    sa.Column('resolved_at', _DT, nullable=True),
    sa.Column('closed_at', _DT, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback'))
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index('ix_feedback_kind_created_at', ['kind', 'created_at'], unique=False)
        batch_op.create_index('ix_feedback_subject_id_created_at', ['subject_id', 'created_at'], unique=False)

    op.create_table('followup_plan',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('segment_key', sa.String(length=64), nullable=True),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('owner', sa.String(length=80), nullable=False),
    sa.Column('team', sa.String(length=80), nullable=True),
    sa.Column('script', sa.Text(), nullable=True),
    sa.Column('start_at', _DT, nullable=False),
    sa.Column('every_days', sa.Integer(), nullable=False),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('watermark', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', _DT, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_followup_plan'))
    )
    op.create_table('followup_plan_member',
    sa.Column('plan_id', sa.String(length=36), nullable=False),
    sa.Column('subject_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('plan_id', 'subject_id', name=op.f('pk_followup_plan_member'))
    )
    with op.batch_alter_table('followup_plan_member', schema=None) as batch_op:
        batch_op.create_index('ix_followup_plan_member_subject_id', ['subject_id'], unique=False)

    op.create_table('followup_task',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('plan_id', sa.String(length=36), nullable=False),
    sa.Column('subject_id', sa.String(length=36), nullable=False),
    sa.Column('occurrence', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('owner', sa.String(length=80), nullable=False),
    sa.Column('team', sa.String(length=80), nullable=True),
    sa.Column('segment_key', sa.String(length=64), nullable=True),
    sa.Column('due_at', _DT, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('completed_at', _DT, nullable=True),
    sa.Column('interaction_id', sa.Integer(), nullable=True),
    sa.Column('created_at', _DT, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_followup_task')),
    sa.UniqueConstraint('subject_id', 'plan_id', 'occurrence', name=op.f('uq_followup_task_subject_id_plan_id_occurrence'))
    )
    with op.batch_alter_table('followup_task', schema=None) as batch_op:
        batch_op.create_index('ix_followup_task_due_at', ['due_at'], unique=False)
        batch_op.create_index('ix_followup_task_plan_id', ['plan_id'], unique=False)
        batch_op.create_index('ix_followup_task_owner_status_due_at', ['owner', 'status', 'due_at'], unique=False)

    op.create_table('interaction',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('subject_id', sa.String(length=36), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('next_step_sealed', sa.Text(), nullable=True),
    sa.Column('notes_sealed', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('at', _DT, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interaction'))
    )
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.create_index('ix_interaction_subject_id_at', ['subject_id', 'at'], unique=False)

    op.create_table('alert_rule',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', _DT, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_rule'))
    )
    op.create_table('alert',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('rule_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.String(length=36), nullable=True),
    sa.Column('summary', sa.String(length=300), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('seen', sa.Integer(), nullable=False),
    sa.Column('first_at', _DT, nullable=False),
    sa.Column('last_at', _DT, nullable=False),
    sa.Column('acknowledged_at', _DT, nullable=True),
    sa.Column('acknowledged_by', sa.String(length=80), nullable=True),
    sa.Column('resolved_at', _DT, nullable=True),
    sa.Column('resolved_by', sa.String(length=80), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert'))
    )
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index('ix_alert_key_status', ['key', 'status'], unique=False)
        batch_op.create_index('ix_alert_status_last_at', ['status', 'last_at'], unique=False)
        batch_op.create_index('ix_alert_subject_id', ['subject_id'], unique=False)

    op.create_table('webhook_endpoint',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('kinds', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', _DT, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint'))
    )
    op.create_table('webhook_delivery',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('endpoint_id', sa.String(length=36), nullable=False),
    sa.Column('alert_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_at', _DT, nullable=False),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.Column('created_at', _DT, nullable=False),
    sa.Column('delivered_at', _DT, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery'))
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_delivery_alert_id', ['alert_id'], unique=False)
        batch_op.create_index('ix_webhook_delivery_status_next_at', ['status', 'next_at'], unique=False)


def downgrade() -> None:
    for table in (
        'webhook_delivery',
        'webhook_endpoint',
        'alert',
        'alert_rule',
        'interaction',
        'followup_task',
        'followup_plan_member',
        'followup_plan',
        'feedback',
    ):
        op.drop_table(table)
