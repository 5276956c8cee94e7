"""Alert rules, evaluation runs and the alert lifecycle (open -> acknowledged -> resolved).

An evaluation runs every enabled rule and the built-in checks (rights requests near their
due date, the cross-border threshold). A finding whose key already has an open or
acknowledged alert updates it (seen, last_at, numbers) instead of raising another; a new
alert is queued for every webhook endpoint and one delivery attempt is made at once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from cdp.alerts import checks, webhooks
from cdp.alerts.checks import Finding
from cdp.alerts.models import Alert, AlertRule
from cdp.audit import service as audit
from cdp.db import utcnow
from cdp.errors import InvalidTransition, NotFound, ValidationFailed
from cdp.followups.service import segment_members
from cdp.policy import Policy
from cdp.segments import service as segments

log = logging.getLogger("cdp.alerts")
ACTIVE = ("open", "acknowledged")
TRANSITIONS = {"open": {"acknowledged", "resolved"}, "acknowledged": {"resolved"}}
# The parameters each kind takes, with their type; anything else is refused.
PARAMS: dict[str, dict[str, type]] = {
    "activity_drop": {
        "segment": str,
        "subject_id": str,
        "purpose": str,
        "recent_days": int,
        "baseline_days": int,
        "drop_ratio": float,
        "min_baseline_events": int,
        "each": bool,
    },
    "complaint_spike": {"baseline_days": int, "sigma": float, "min_count": int},
}


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message,
        errors=[{"loc": ["body", *field.split(".")], "msg": message, "type": "value_error"}],
    )


def _check_params(policy: Policy, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    known = PARAMS[kind]
    out: dict[str, Any] = {}
    for name, value in params.items():
        want = known.get(name)
        if want is None:
            raise _invalid(f"params.{name}", f"{kind} takes no parameter {name[:40]!r}")
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if not ok or (want is not bool and isinstance(value, bool)):
            raise _invalid(f"params.{name}", f"{name} must be a {want.__name__}")
        if want in (int, float) and value <= 0:
            raise _invalid(f"params.{name}", f"{name} must be positive")
        out[name] = value
    if kind == "activity_drop":
        if "segment" in out and "subject_id" in out:
            raise _invalid("params", "give a segment or a subject_id, not both")
        if not 0 < float(out.get("drop_ratio", 0.5)) < 1:
            raise _invalid("params.drop_ratio", "drop_ratio must be between 0 and 1")
        if "purpose" in out and out["purpose"] not in policy.purposes:
            raise _invalid("params.purpose", "not a purpose of purposes.yaml")
    return out


def _check_segment(session: Session, policy: Policy, params: dict[str, Any]) -> None:
    key = params.get("segment")
    if key is not None and key not in segments.definitions(session, policy=policy):
        raise _invalid("params.segment", f"no segment {key[:64]!r}")


def create_rule(
    session: Session, *, policy: Policy, actor: str, kind: str, name: str, params: dict[str, Any]
) -> AlertRule:
    checked = _check_params(policy, kind, params)
    _check_segment(session, policy, checked)
    rule = AlertRule(
        id=str(uuid.uuid4()),
        kind=kind,
        name=name,
        params=checked,
        enabled=True,
        created_by=actor,
        created_at=utcnow(),
    )
    session.add(rule)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="alerts.rule_create",
        subject=rule.params.get("subject_id"),
        detail={"rule_id": rule.id, "kind": kind},
    )
    return rule


def list_rules(session: Session) -> list[AlertRule]:
    return list(session.scalars(select(AlertRule).order_by(AlertRule.created_at, AlertRule.id)))


def known(session: Session, policy: Policy) -> set[str]:
    return set(segments.definitions(session, policy=policy))


def _findings(session: Session, policy: Policy, now: datetime) -> tuple[list[Finding], int]:
    today = now.date()
    found: list[Finding | None] = []
    rules = list(session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True))))
    for rule in rules:
        params = dict(rule.params)
        if rule.kind == "activity_drop":
            if params.get("segment") and params["segment"] not in known(session, policy):
                log.warning("alert rule %s names a segment that is gone; skipped", rule.id)
                continue
            members = None
            if params.get("segment"):
                members = segment_members(
                    session,
                    policy=policy,
                    key=params["segment"],
                    purpose=params.get("purpose", "analytics"),
                )
            found.extend(
                checks.activity_drop(
                    session, rule_id=rule.id, params=params, members=members, today=today
                )
            )
        elif rule.kind == "complaint_spike":
            found.append(
                checks.complaint_spike(session, rule_id=rule.id, params=params, today=today)
            )
    found.extend(checks.rights_due(session, policy=policy, now=now))
    found.append(checks.cross_border(session, policy=policy))
    return checks.flatten(found), len(rules) + 2


@dataclass(frozen=True, slots=True)
class Evaluation:
    checks: int
    raised: list[Alert]
    updated: int
    deliveries: webhooks.DeliveryRun
    cleared: int = 0


def evaluate(
    session: Session,
    *,
    policy: Policy,
    actor: str,
    now: datetime | None = None,
    send: webhooks.Sender = webhooks.post,
) -> Evaluation:
    """Run every check; raise new alerts, refresh open ones, deliver what is due."""
    now = now or utcnow()
    findings, count = _findings(session, policy, now)
    raised: list[Alert] = []
    updated = 0
    for finding in findings:
        current = session.scalar(
            select(Alert).where(Alert.key == finding.key, Alert.status.in_(ACTIVE)).limit(1)
        )
        if current is not None:
            current.seen += 1
            current.last_at = now
            current.severity, current.detail = finding.severity, finding.detail
            current.summary = finding.summary[:300]
            updated += 1
            continue
        alert = Alert(
            id=str(uuid.uuid4()),
            rule_id=finding.rule_id,
            kind=finding.kind,
            key=finding.key,
            severity=finding.severity,
            status="open",
            subject_id=finding.subject_id,
            summary=finding.summary[:300],
            detail=finding.detail,
            seen=1,
            first_at=now,
            last_at=now,
        )
        session.add(alert)
        session.flush()
        webhooks.enqueue(session, alert, now)
        raised.append(alert)
    cleared = _clear_built_ins(session, {f.key for f in findings}, now)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="alerts.evaluate",
        detail={
            "checks": count,
            "raised": len(raised),
            "updated": updated,
            "cleared": cleared,
        },
    )
    run = webhooks.deliver_due(session, now=now, send=send)
    return Evaluation(count, raised, updated, run, cleared)


# Checked on every run from current state: when the condition is gone (the request was
# answered or extended, the count fell), the alert resolves itself.
SELF_CLEARING = ("rights_due", "cross_border")


def _clear_built_ins(session: Session, keys: set[str], now: datetime) -> int:
    gone = [
        a
        for a in session.scalars(
            select(Alert).where(Alert.kind.in_(SELF_CLEARING), Alert.status.in_(ACTIVE))
        )
        if a.key not in keys
    ]
    for alert in gone:
        alert.status, alert.resolved_at, alert.resolved_by = "resolved", now, "system:alerts"
    return len(gone)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    status: str | None = None
    kind: str | None = None
    severity: str | None = None


def list_alerts(
    session: Session, *, where: AlertFilter, after: tuple[datetime, str] | None, limit: int
) -> tuple[list[Alert], tuple[datetime, str] | None]:
    """Most recently seen first."""
    stmt = select(Alert).order_by(Alert.last_at.desc(), Alert.id.desc()).limit(limit)
    for name in ("status", "kind", "severity"):
        value = getattr(where, name)
        if value is not None:
            stmt = stmt.where(getattr(Alert, name) == value)
    if after is not None:
        stmt = stmt.where(tuple_(Alert.last_at, Alert.id) < tuple_(*after))
    rows = list(session.scalars(stmt))
    return rows, (rows[-1].last_at, rows[-1].id) if len(rows) == limit else None


def update_alert(session: Session, *, actor: str, alert_id: str, status: str) -> Alert:
    alert = session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None:
        raise NotFound("no such alert")
    if status not in TRANSITIONS.get(alert.status, set()):
        raise InvalidTransition(f"an alert cannot go from {alert.status} to {status}")
    now = utcnow()
    if status == "acknowledged":
        alert.acknowledged_at, alert.acknowledged_by = now, actor
    else:
        alert.resolved_at, alert.resolved_by = now, actor
    before, alert.status = alert.status, status
    session.flush()
    audit.append(
        session,
        actor=actor,
        action=f"alerts.{'acknowledge' if status == 'acknowledged' else 'resolve'}",
        subject=alert.subject_id,
        detail={"alert_id": alert.id, "from": before, "to": status},
    )
    return alert
