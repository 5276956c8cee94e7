"""Segments: definitions (built-ins from policy, others stored), counts, purpose-filtered members,
explanations and membership snapshots with enter/leave history."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.auth.principal import Principal
from cdp.consent import service as consent
from cdp.consent import transfers
from cdp.consent.models import SubjectStatus
from cdp.db import UTCDateTime, utcnow
from cdp.errors import (
    InvalidCondition,
    NotFound,
    SegmentExists,
    SegmentInUse,
    SegmentReadOnly,
)
from cdp.metrics import kanon
from cdp.policy import Decision, Policy
from cdp.policy import decide as policy_decide
from cdp.profiles.models import Profile
from cdp.segments import compiler, language, streaming
from cdp.segments.access import allowed
from cdp.segments.compiler import PROFILE, Clock
from cdp.segments.models import Segment, SegmentChange, SegmentMember, SegmentRefresh

STREAM_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Definition:
    """A segment as callers see it, built-in or stored."""

    key: str
    names: dict[str, str]
    description: str
    condition: dict[str, Any]
    builtin: bool
    updated_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.names.get("en") or next(iter(self.names.values()))


def definitions(session: Session, *, policy: Policy) -> dict[str, Definition]:
    """Every segment by key: the policy's built-ins first, then the stored ones."""
    found = {
        key: Definition(key, dict(spec.names), spec.description, dict(spec.condition), True)
        for key, spec in policy.segments.items()
    }
    for row in session.scalars(select(Segment).order_by(Segment.key)):
        found.setdefault(
            row.key,
            Definition(
                row.key,
                {"en": row.name},
                row.description,
                dict(row.condition),
                False,
                row.updated_at,
            ),
        )
    return found


def get(session: Session, *, policy: Policy, key: str) -> Definition:
    found = definitions(session, policy=policy).get(key)
    if found is None:
        raise NotFound(f"no segment {key[:64]!r}")
    return found


def _problems_to_error(exc: language.ConditionError) -> InvalidCondition:
    errors = [{"loc": list(p.loc), "msg": p.msg, "type": p.type} for p in exc.problems]
    first = exc.problems[0]
    return InvalidCondition(f"{language.dotted(first.loc)}: {first.msg}", errors=errors)


def parse(
    policy: Policy,
    condition: Any,
    known: Mapping[str, Definition],
    *,
    path: language.Path = ("body", "condition"),
) -> language.Node:
    """The condition's tree, or InvalidCondition (422) naming each failing JSON path."""

    def resolve(key: str) -> Mapping[str, Any] | None:
        found = known.get(key)
        return found.condition if found is not None else None

    try:
        return language.parse(condition, fields=policy.fields, resolve=resolve, path=path)
    except language.ConditionError as exc:
        raise _problems_to_error(exc) from None


def tree(session: Session, *, policy: Policy, key: str) -> tuple[Definition, language.Node]:
    known = definitions(session, policy=policy)
    found = known.get(key)
    if found is None:
        raise NotFound(f"no segment {key[:64]!r}")
    return found, parse(policy, found.condition, known, path=("segment", key))


# --- definitions ------------------------------------------------------------------------------


def create(
    session: Session,
    *,
    policy: Policy,
    actor: str,
    key: str,
    name: str,
    description: str,
    condition: dict[str, Any],
) -> Definition:
    known = definitions(session, policy=policy)
    if key in known:
        raise SegmentExists(f"segment {key!r} exists")
    parse(policy, condition, known)
    now = utcnow()
    session.add(
        Segment(
            key=key,
            name=name,
            description=description,
            condition=condition,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    audit.append(session, actor=actor, action="segment.create", detail={"segment": key})
    return Definition(key, {"en": name}, description, condition, False, now)


def update(
    session: Session,
    *,
    policy: Policy,
    actor: str,
    key: str,
    name: str,
    description: str,
    condition: dict[str, Any],
) -> Definition:
    known = definitions(session, policy=policy)
    found = known.get(key)
    if found is None:
        raise NotFound(f"no segment {key[:64]!r}")
    if found.builtin:
        raise SegmentReadOnly(f"segment {key!r} is built in: edit policies/segments.yaml")
    node = parse(policy, condition, known)
    if key in language.references(node):
        raise InvalidCondition(
            f"segment {key!r} cannot refer to itself",
            errors=[{"loc": ["body", "condition"], "msg": "refers to itself", "type": "cycle"}],
        )
    row = session.get(Segment, key)
    assert row is not None
    row.name, row.description, row.condition = name, description, condition
    row.updated_at = utcnow()
    session.flush()
    audit.append(session, actor=actor, action="segment.update", detail={"segment": key})
    return Definition(key, {"en": name}, description, condition, False, row.updated_at)


def remove(session: Session, *, policy: Policy, actor: str, key: str) -> None:
    known = definitions(session, policy=policy)
    found = known.get(key)
    if found is None:
        raise NotFound(f"no segment {key[:64]!r}")
    if found.builtin:
        raise SegmentReadOnly(f"segment {key!r} is built in: edit policies/segments.yaml")
    for other in known.values():
        if other.key != key and key in _direct_references(other.condition):
            raise SegmentInUse(f"segment {other.key!r} refers to {key!r}")
    session.execute(delete(SegmentMember).where(SegmentMember.segment_key == key))
    session.execute(delete(SegmentRefresh).where(SegmentRefresh.segment_key == key))
    session.execute(delete(Segment).where(Segment.key == key))
    audit.append(session, actor=actor, action="segment.delete", detail={"segment": key})


def _direct_references(raw: Any) -> set[str]:
    if isinstance(raw, dict):
        found = {raw["segment"]} if isinstance(raw.get("segment"), str) else set()
        for value in raw.values():
            found |= _direct_references(value)
        return found
    if isinstance(raw, list):
        return set().union(*(_direct_references(v) for v in raw)) if raw else set()
    return set()


# --- counts and members ---------------------------------------------------------------------


def count(session: Session, *, policy: Policy, key: str, at: Clock | None = None) -> int:
    """Members of the segment now, before any purpose filter (for metrics and previews)."""
    _, node = tree(session, policy=policy, key=key)
    compiler.tune(session)
    return int(session.scalar(compiler.count_query(node, at or compiler.clock())) or 0)


def preview(session: Session, *, policy: Policy, condition: dict[str, Any]) -> kanon.Cell:
    """How many subjects a draft condition matches, suppressed under k (a count is a metric)."""
    node = parse(policy, condition, definitions(session, policy=policy))
    compiler.tune(session)
    n = int(session.scalar(compiler.count_query(node, compiler.clock())) or 0)
    return kanon.cell(n, subjects=n, k=policy.settings.k_anonymity)


def _members_stmt(
    session: Session, *, policy: Policy, key: str, purpose: str, at: Clock | None = None
) -> tuple[Any, Any]:
    _, node = tree(session, policy=policy, key=key)
    compiler.tune(session)
    stmt, ids = compiler.members_query(node, at or compiler.clock())
    return stmt.where(allowed(policy, purpose, ids)), ids


def stream_member_ids(session: Session, *, policy: Policy, key: str, purpose: str) -> Iterator[str]:
    """Members allowed for the purpose, streamed from a server-side cursor in id order."""
    stmt, ids = _members_stmt(session, policy=policy, key=key, purpose=purpose)
    return streaming.first_column(session, stmt.order_by(ids), STREAM_BATCH)


def member_ids(session: Session, *, policy: Policy, key: str, purpose: str) -> list[str]:
    """Current members of a segment that the purpose may use (consent, restriction and the
    art. 24 opt-out applied). NotFound for an unknown segment."""
    policy.purpose(purpose)
    ids = list(stream_member_ids(session, policy=policy, key=key, purpose=purpose))
    _count_transfers(session, policy, purpose, ids)
    return ids


def _count_transfers(session: Session, policy: Policy, purpose: str, ids: list[str]) -> None:
    """A cross-border purpose's use of these subjects counts towards PIPL art. 40's thresholds."""
    if not policy.purposes[purpose].cross_border or not ids:
        return
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        minor = SubjectStatus.minor.is_(True)
        minors = set(
            session.scalars(
                select(SubjectStatus.subject_id).where(SubjectStatus.subject_id.in_(chunk), minor)
            )
        )
        for subject_id in chunk:
            decision = Decision(purpose, frozenset(), frozenset(), subject_id)
            transfers.count(session, policy=policy, decision=decision, minor=subject_id in minors)


def members_page(
    session: Session,
    *,
    policy: Policy,
    principal: Principal,
    key: str,
    purpose: str | None,
    after: str | None,
    limit: int,
) -> tuple[list[str], str | None]:
    """One page of members allowed for the purpose, and the cursor value for the next."""
    decision = policy_decide(policy, principal, purpose, required_scope="segments:read")
    stmt, column = _members_stmt(session, policy=policy, key=key, purpose=decision.purpose)
    if after is not None:
        stmt = stmt.where(column > after)
    ids = list(session.scalars(stmt.order_by(column).limit(limit)))
    _count_transfers(session, policy, decision.purpose, ids)
    audit.append(
        session,
        actor=principal.actor,
        action="segment.members.read",
        purpose=decision.purpose,
        detail={"segment": key, "returned": len(ids)},
    )
    return ids, ids[-1] if len(ids) == limit else None


# --- one subject: its segments and why -------------------------------------------------------


def _member_flags(
    session: Session, nodes: Mapping[str, language.Node], subject_id: str, at: Clock
) -> dict[str, bool]:
    if not nodes:
        return {}
    columns = [compiler.predicate(node, at).label(f"s{i}") for i, node in enumerate(nodes.values())]
    stmt = select(*columns).select_from(compiler.population()).where(PROFILE.c.id == subject_id)
    row = session.execute(stmt).one_or_none()
    if row is None:
        raise NotFound("no such profile")
    return {key: bool(row[i]) for i, key in enumerate(nodes)}


def _all_trees(session: Session, policy: Policy) -> dict[str, tuple[Definition, language.Node]]:
    known = definitions(session, policy=policy)
    return {
        key: (found, parse(policy, found.condition, known, path=("segment", key)))
        for key, found in known.items()
    }


def profile_segments(
    session: Session,
    *,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    subject_id: str,
) -> list[Definition]:
    """The segments a subject is in, when the purpose may use the subject's data (403 if not)."""
    consent.decide(
        session,
        policy=policy,
        principal=principal,
        purpose=purpose,
        subject=subject_id,
        required_scope="segments:read",
    )
    if session.get(Profile, subject_id) is None:
        raise NotFound("no such profile")
    trees = _all_trees(session, policy)
    flags = _member_flags(
        session, {k: n for k, (_, n) in trees.items()}, subject_id, compiler.clock()
    )
    audit.append(
        session,
        actor=principal.actor,
        action="segment.profile.read",
        subject=subject_id,
        purpose=purpose,
        detail={"segments": sum(flags.values())},
    )
    return [trees[k][0] for k, member in flags.items() if member]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _evaluate(node: language.Node, leaf_result: Mapping[int, bool]) -> bool:
    if isinstance(node, language.All):
        return all(_evaluate(c, leaf_result) for c in node.children)
    if isinstance(node, language.AnyOf):
        return any(_evaluate(c, leaf_result) for c in node.children)
    if isinstance(node, language.Not):
        return not _evaluate(node.child, leaf_result)
    if isinstance(node, language.SegmentRef):
        return _evaluate(node.node, leaf_result)
    return leaf_result[id(node)]


def _deciding(node: language.Node, leaf_result: Mapping[int, bool]) -> list[language.Leaf]:
    """The leaves that decided the node's outcome: for a true `all` every child, for a false one
    the failing children; for `any` the reverse; `not` passes its child's through."""
    if isinstance(node, language.All | language.AnyOf):
        outcome = _evaluate(node, leaf_result)
        wanted = outcome if isinstance(node, language.All) else not outcome
        children = (
            node.children
            if wanted
            else [c for c in node.children if _evaluate(c, leaf_result) == outcome]
        )
        return [leaf for c in children for leaf in _deciding(c, leaf_result)]
    if isinstance(node, language.Not):
        return _deciding(node.child, leaf_result)
    if isinstance(node, language.SegmentRef):
        return _deciding(node.node, leaf_result)
    return [node]


def _explain(session: Session, node: language.Node, subject_id: str, at: Clock) -> dict[str, Any]:
    leaves = language.leaves(node)
    compiled = [compiler.compile_leaf(leaf, at) for leaf in leaves]
    columns: list[Any] = [compiler.predicate(node, at).label("member")]
    for i, c in enumerate(compiled):
        columns.append(c.predicate.label(f"p{i}"))
        columns += [m.label(f"v{i}_{name}") for name, m in c.measures.items()]
    stmt = select(*columns).select_from(compiler.population()).where(PROFILE.c.id == subject_id)
    row = session.execute(stmt).mappings().one_or_none()
    if row is None:
        raise NotFound("no such profile")
    results = {id(leaf): bool(row[f"p{i}"]) for i, leaf in enumerate(leaves)}
    index = {id(leaf): i for i, leaf in enumerate(leaves)}
    deciding = _deciding(node, results)
    return {
        "member": bool(row["member"]),
        "evaluated_at": at.now.isoformat(),
        "conditions": [
            {
                "path": language.dotted(leaf.path),
                "condition": dict(leaf.raw),
                "matched": results[id(leaf)],
                "values": {
                    name: _jsonable(row[f"v{index[id(leaf)]}_{name}"])
                    for name in compiled[index[id(leaf)]].measures
                },
            }
            for leaf in deciding
        ],
    }


def explain(
    session: Session, *, policy: Policy, actor: str, key: str, subject_id: str
) -> dict[str, Any]:
    """Whether the subject is in the segment and which conditions decided it, with the values
    used (PIPL art. 24, 48). The read is audited."""
    found, node = tree(session, policy=policy, key=key)
    result = _explain(session, node, subject_id, compiler.clock())
    traits = sorted(
        {leaf.field for leaf in language.leaves(node) if isinstance(leaf, language.Trait)}
    )
    audit.append(
        session,
        actor=actor,
        action="segment.explain",
        subject=subject_id,
        fields=traits,
        detail={"segment": key, "member": result["member"]},
    )
    return {"segment": found.key, "name": found.name, "subject_id": subject_id, **result}


def subject_segments(session: Session, *, policy: Policy, subject_id: str) -> list[dict[str, Any]]:
    """Every segment with the subject's membership and its explanation (JSON-able), for the
    access bundle and explanation requests. NotFound when the profile does not exist."""
    at = compiler.clock()
    out = []
    for key, (found, node) in _all_trees(session, policy).items():
        result = _explain(session, node, subject_id, at)
        out.append(
            {
                "key": key,
                "name": found.name,
                "member": result["member"],
                "explanation": result,
            }
        )
    return out


# --- snapshots ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshResult:
    segment: str
    members: int
    entered: int
    left: int
    refreshed_at: datetime


def refresh(
    session: Session, *, policy: Policy, actor: str, key: str | None = None
) -> list[RefreshResult]:
    """Recomputes the snapshot of one segment (or all), recording who entered and who left."""
    trees = _all_trees(session, policy)
    if key is not None and key not in trees:
        raise NotFound(f"no segment {key[:64]!r}")
    at = compiler.clock()
    compiler.tune(session)
    out = []
    for k in [key] if key is not None else list(trees):
        out.append(_refresh_one(session, k, trees[k][1], at))
    audit.append(
        session,
        actor=actor,
        action="segment.refresh",
        detail={"segments": [r.segment for r in out]},
    )
    return out


def _refresh_one(session: Session, key: str, node: language.Node, at: Clock) -> RefreshResult:
    now = at.now
    current = compiler.members_query(node, at)[0].subquery()
    held = select(SegmentMember.subject_id).where(SegmentMember.segment_key == key)
    stamp = literal(now, UTCDateTime)
    entered = select(literal(key), current.c.id, literal("enter"), stamp).where(
        current.c.id.not_in(held)
    )
    left = select(literal(key), SegmentMember.subject_id, literal("leave"), stamp).where(
        SegmentMember.segment_key == key,
        SegmentMember.subject_id.not_in(select(current.c.id)),
    )
    columns = ["segment_key", "subject_id", "change", "at"]
    changes = cast(Table, SegmentChange.__table__)
    # RETURNING rather than rowcount, which the PostgreSQL driver leaves at -1 here.
    n_in = _inserted(session, insert(changes).from_select(columns, entered))
    n_out = _inserted(session, insert(changes).from_select(columns, left))
    session.execute(
        delete(SegmentMember)
        .where(
            SegmentMember.segment_key == key,
            SegmentMember.subject_id.not_in(select(current.c.id)),
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        insert(SegmentMember).from_select(
            ["segment_key", "subject_id", "since"],
            select(literal(key), current.c.id, stamp).where(current.c.id.not_in(held)),
        )
    )
    total = int(
        session.scalar(
            select(func.count()).select_from(SegmentMember).where(SegmentMember.segment_key == key)
        )
        or 0
    )
    row = session.get(SegmentRefresh, key)
    if row is None:
        row = SegmentRefresh(segment_key=key, refreshed_at=now, members=0, entered=0, left=0)
        session.add(row)
    row.refreshed_at, row.members, row.entered, row.left = now, total, n_in, n_out
    session.flush()
    return RefreshResult(key, total, int(n_in), int(n_out), now)


def _inserted(session: Session, stmt: Any) -> int:
    return sum(1 for _ in session.execute(stmt.returning(literal(1))))
