"""Free text about subjects past its purpose's retention: feedback comments, answers and
resolutions, and the notes and next steps of follow-up interactions.

Each row was collected under a purpose (its `purpose` column): rows of the rule's purpose in
retention.yaml are kept the rule's days, rows of any other purpose that purpose's
retention_days. `anonymise` clears the sealed text and keeps the row (kind, status, scores,
channel, outcome stay countable); `delete` removes the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from cdp.feedback.models import Feedback
from cdp.followups.models import Interaction
from cdp.policy import Policy
from cdp.retention import policy as rp
from cdp.retention.items import DEFAULT_DAYS, Item


def expire(session: Session, *, policy: Policy, now: datetime) -> list[Item]:
    spec = (policy.retention or rp.EMPTY).records
    return _expire(
        session,
        policy,
        now,
        table=Feedback.__table__,  # type: ignore[arg-type]
        purpose_col=Feedback.purpose,
        at_col=Feedback.created_at,
        text_cols=(Feedback.comment_sealed, Feedback.answers_sealed, Feedback.resolution_sealed),
        rule=spec.feedback_text,
        data_class="feedback_text",
    ) + _expire(
        session,
        policy,
        now,
        table=Interaction.__table__,  # type: ignore[arg-type]
        purpose_col=Interaction.purpose,
        at_col=Interaction.at,
        text_cols=(Interaction.notes_sealed, Interaction.next_step_sealed),
        rule=spec.interaction_notes,
        data_class="interaction_notes",
    )


def _expire(
    session: Session,
    policy: Policy,
    now: datetime,
    *,
    table: Table,
    purpose_col: InstrumentedAttribute[str],
    at_col: InstrumentedAttribute[datetime],
    text_cols: Sequence[InstrumentedAttribute[str | None]],
    rule: rp.RecordRule | None,
    data_class: str,
) -> list[Item]:
    present = set(session.scalars(select(purpose_col).distinct()))
    if rule is not None:
        present.add(rule.purpose)
    action = rule.action if rule is not None else "delete"
    items = []
    for purpose in sorted(present):
        cutoff = now - timedelta(days=_days(policy, purpose, rule))
        where: ColumnElement[bool] = and_(purpose_col == purpose, at_col < cutoff)
        result: Any
        if action == "anonymise":
            has_text = or_(*(col.is_not(None) for col in text_cols))
            result = session.execute(
                update(table)
                .where(where, has_text)
                .values({col.key: None for col in text_cols})
                .execution_options(synchronize_session=False)
            )
        else:
            result = session.execute(
                delete(table).where(where).execution_options(synchronize_session=False)
            )
        count = int(getattr(result, "rowcount", 0) or 0)
        items.append(Item(table.name, data_class, None, purpose, action, cutoff, count))
    return items


def _days(policy: Policy, purpose: str, rule: rp.RecordRule | None) -> int:
    if rule is not None and rule.purpose == purpose:
        return rule.days
    spec = policy.purposes.get(purpose)
    if spec is not None:
        return spec.retention_days
    # A purpose no longer in policy: nothing justifies keeping more than the rule allows.
    return rule.days if rule is not None else DEFAULT_DAYS
