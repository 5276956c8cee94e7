"""The access and portability bundle (PIPL art. 45): everything held about one subject,
decrypted, machine-readable, and the purposes and recipients of its processing."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.auth.models import Client
from cdp.consent import service as consent
from cdp.consent.models import ConsentRecord
from cdp.crypto import Crypto, SubjectKeys
from cdp.events.models import Event
from cdp.events.service import EVENT_TABLE
from cdp.feedback import service as feedback
from cdp.followups import service as followups
from cdp.policy import Policy
from cdp.profiles import traits
from cdp.profiles.models import Identity, Profile
from cdp.profiles.service import IDENTITY, PROFILE
from cdp.rights.models import RightsRequest
from cdp.segments import service as segments

FORMAT_VERSION = 1


def _profile(
    session: Session, keys: SubjectKeys, policy: Policy, subject_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    profile = session.get(Profile, subject_id)
    if profile is None:
        return {}, []
    values: dict[str, Any] = dict(profile.plain or {})
    for name, ciphertext in (profile.sealed or {}).items():
        text = keys.open(subject_id, PROFILE, name, ciphertext)
        spec = policy.fields.get(name)
        values[name] = traits.decode(spec, text) if spec else text
    identities = [
        {
            "kind": row.kind,
            "value": keys.open(subject_id, IDENTITY, row.kind, row.sealed_value),
            "created_at": row.created_at,
        }
        for row in session.scalars(
            select(Identity).where(Identity.subject_id == subject_id).order_by(Identity.id)
        )
    ]
    for item in identities:
        values[str(item["kind"])] = item["value"]
    out = {"id": profile.id, "created_at": profile.created_at, "updated_at": profile.updated_at}
    return {**out, "fields": dict(sorted(values.items()))}, identities


def _consents(session: Session, policy: Policy, subject_id: str) -> dict[str, Any]:
    state = consent.load_states(session, [subject_id])[subject_id]
    rows = session.scalars(
        select(ConsentRecord)
        .where(ConsentRecord.subject_id == subject_id)
        .order_by(ConsentRecord.at, ConsentRecord.id)
    )
    return {
        "restricted": state.restricted,
        "minor": state.minor,
        "personalisation_opt_out": state.personalisation_opt_out,
        "current": [
            {
                "purpose": purpose,
                "state": grant.state,
                "notice_id": grant.notice_id,
                "notice_version": grant.notice_version,
                "separate": grant.separate,
                "at": grant.at,
                "in_effect": consent.effective(policy, purpose, subject_id, state) is None,
            }
            for purpose, grant in sorted(state.consents.items())
        ],
        "history": [
            {
                "purpose": r.purpose,
                "state": r.state,
                "notice_id": r.notice_id,
                "notice_version": r.notice_version,
                "channel": r.channel,
                "separate": r.separate,
                "guardian": (r.guardian or {}).get("relation"),
                "at": r.at,
            }
            for r in rows
        ],
    }


def _events(session: Session, keys: SubjectKeys, subject_id: str) -> list[dict[str, Any]]:
    t = Event.__table__.c
    rows = session.execute(
        select(
            t.id,
            t.type,
            t.name,
            t.timestamp,
            t.received_at,
            t.source_id,
            t.properties,
            t.sealed,
            t.context,
        )
        .where(t.subject_id == subject_id)
        .order_by(t.timestamp, t.id)
    )
    out = []
    for row in rows:
        properties = dict(row.properties or {})
        for prop, ciphertext in (row.sealed or {}).items():
            properties[prop] = json.loads(
                keys.open(subject_id, EVENT_TABLE, f"{row.id}.{prop}", ciphertext)
            )
        out.append(
            {
                "id": row.id,
                "type": row.type,
                "name": row.name,
                "timestamp": row.timestamp,
                "received_at": row.received_at,
                "source_id": row.source_id,
                "properties": properties,
                "context": dict(row.context or {}),
            }
        )
    return out


def processing(session: Session, policy: Policy) -> list[dict[str, Any]]:
    """The purposes of processing and who receives the data: for third-party and cross-border
    purposes the organisations of the clients allowed to use them (PIPL art. 17, 23, 39)."""
    clients = list(session.scalars(select(Client).where(Client.revoked_at.is_(None))))
    out = []
    for spec in policy.purposes.values():
        users = [c for c in clients if spec.id in (c.purposes or [])]
        item: dict[str, Any] = {
            "purpose": spec.id,
            "names": dict(spec.names),
            "description": spec.description,
            "legal_basis": spec.legal_basis,
            "categories": list(spec.categories),
            "retention_days": spec.retention_days,
            "personalisation": spec.personalisation,
            "third_party": spec.third_party,
            "cross_border": spec.cross_border,
            "entrusted_processors": sorted(
                {c.organisation for c in users if c.entrusted and c.organisation}
            ),
        }
        if spec.third_party or spec.cross_border:
            item["recipients"] = sorted({c.organisation for c in users if c.organisation})
        out.append(item)
    return out


def build(session: Session, *, crypto: Crypto, policy: Policy, subject_id: str) -> dict[str, Any]:
    """Everything about the subject, and nobody else: every query is by this subject's id."""
    keys = crypto.keys_for([subject_id])
    profile, identities = _profile(session, keys, policy, subject_id)
    bundle: dict[str, Any] = {
        "format": "cdp-access-bundle",
        "version": FORMAT_VERSION,
        "subject_id": subject_id,
        "profile": profile,
        "identities": identities,
        "consents": _consents(session, policy, subject_id),
        "events": _events(session, keys, subject_id),
    }
    bundle["feedback"] = feedback.export_subject(session, crypto=crypto, subject_id=subject_id)
    bundle["followups"] = followups.export_subject(session, crypto=crypto, subject_id=subject_id)
    bundle["segments"] = segments.subject_segments(session, policy=policy, subject_id=subject_id)
    bundle["processing"] = processing(session, policy)
    bundle["rights_requests"] = [
        {
            "id": r.id,
            "type": r.type,
            "status": r.status,
            "received_at": r.received_at,
            "due_at": r.due_at,
            "completed_at": r.completed_at,
        }
        for r in session.scalars(
            select(RightsRequest)
            .where(RightsRequest.subject_id == subject_id)
            .order_by(RightsRequest.received_at)
        )
    ]
    return bundle


def counts(bundle: dict[str, Any]) -> dict[str, int]:
    """Items per section, for the request's result (no PI)."""
    out = {}
    for name, value in bundle.items():
        if isinstance(value, list):
            out[name] = len(value)
        elif isinstance(value, dict) and name == "followups":
            out.update({f"followups.{k}": len(v) for k, v in value.items() if isinstance(v, list)})
    return out


# --- serialisation ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def as_json(bundle: dict[str, Any]) -> bytes:
    return json.dumps(_plain(bundle), ensure_ascii=False, indent=1).encode()


def _rows(items: list[Any]) -> tuple[list[str], list[list[str]]]:
    plain = [_plain(i) if isinstance(i, dict) else {"value": _plain(i)} for i in items]
    header: list[str] = []
    for item in plain:
        header += [k for k in item if k not in header]
    cell: Callable[[Any], str] = lambda v: (  # noqa: E731
        "" if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    )
    return header, [[cell(item.get(k)) for k in header] for item in plain]


def as_csv_zip(bundle: dict[str, Any]) -> bytes:
    """One CSV per section (nested values as JSON in their cell), in a zip."""
    sections: dict[str, list[Any]] = {}
    for name, value in bundle.items():
        if name == "profile":
            fields = value.get("fields", {}) if value else {}
            sections["profile"] = [{"field": k, "value": v} for k, v in fields.items()]
        elif name == "consents":
            sections["consents"] = value["current"]
            sections["consent_history"] = value["history"]
        elif name == "followups" and isinstance(value, dict):
            for part, items in value.items():
                sections[f"followups_{part}"] = list(items)
        elif isinstance(value, list):
            sections[name] = value
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, items in sections.items():
            header, rows = _rows(items)
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(header)
            writer.writerows(rows)
            archive.writestr(f"{name}.csv", "\ufeff" + text.getvalue())
    return buffer.getvalue()
