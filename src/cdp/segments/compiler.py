"""Compiles a condition tree to one SQLAlchemy Core boolean over `profile` left-joined to
`subject_summary`; the same leaves give the measured values an explanation shows.

Windows that the summary holds exactly (recency, first seen, lifetime totals, calendar months,
completed ISO weeks) read the summary row; any other window falls back to subject_daily, as a
set-based IN / NOT IN subquery so the database can hash-join it. Every predicate is two-valued
(never NULL), so NOT and the explanation's Python evaluation agree with SQL.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    Table,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

from cdp.events.models import SubjectDaily
from cdp.feedback.models import Feedback
from cdp.profiles.models import Profile
from cdp.segments import language as lang
from cdp.segments.models import MONTH_SLOTS, WEEK_SLOTS
from cdp.segments.summary import SUMMARY, month_period, week_period

PROFILE = cast(Table, Profile.__table__)
DAILY = cast(Table, SubjectDaily.__table__)
FEEDBACK = cast(Table, Feedback.__table__)
OPEN_COMPLAINT = ("open", "in_progress")

_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


@dataclass(frozen=True, slots=True)
class Clock:
    """The moment a condition is evaluated at: windows end today (UTC)."""

    now: datetime

    @property
    def today(self) -> date:
        return self.now.date()

    @property
    def month(self) -> int:
        return month_period(self.today)

    @property
    def week(self) -> int:
        return week_period(self.today)

    def since_day(self, days: int) -> date:
        """First day of a window of `days` days ending today (today included)."""
        return self.today - timedelta(days=days - 1)

    def since(self, days: int) -> datetime:
        return datetime.combine(self.since_day(days), time(), UTC)


def clock(at: datetime | None = None) -> Clock:
    return Clock((at or datetime.now(UTC)).astimezone(UTC))


# Set tests (IN / NOT IN, also under OR) run as hashed subplans only when the set fits in
# work_mem; PostgreSQL's 4 MB default holds about 100,000 ids, a large segment many more.
WORK_MEM = "256MB"


def tune(session: Session) -> None:
    """Plans this transaction's segment queries for whole sets (PostgreSQL): memory to hash
    them, and cursors planned for reading every row."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        # Members stream from a server-side cursor, which PostgreSQL plans for the first 10 %
        # of rows by default; the caller reads them all.
        session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))


def population() -> FromClause:
    """Every profile, with its summary row when it has sent events."""
    return PROFILE.outerjoin(SUMMARY, SUMMARY.c.subject_id == PROFILE.c.id)


def root(node: lang.Node) -> tuple[FromClause, ColumnElement[str], bool]:
    """Where a query starts: subject_summary alone when only subjects with a summary row can
    match and no trait is read (a scan of one narrow table, summary tests row by row), else
    profile alone, each summary test then a set (IN / NOT IN) the database can hash."""
    if requires_summary(node) and not reads_traits(node):
        return SUMMARY, SUMMARY.c.subject_id, True
    return PROFILE, PROFILE.c.id, False


def members_query(node: lang.Node, at: Clock) -> tuple[Select[Any], ColumnElement[str]]:
    """Ids of the subjects matching the condition (labelled `id`), and the id column."""
    source, ids, joined = root(node)
    test = predicate(node, at, ids, joined=joined)
    return select(ids.label("id")).select_from(source).where(test), ids


def count_query(node: lang.Node, at: Clock) -> Select[Any]:
    source, ids, joined = root(node)
    return select(func.count()).select_from(source).where(predicate(node, at, ids, joined=joined))


def reads_traits(node: lang.Node) -> bool:
    return any(isinstance(leaf, lang.Trait) for leaf in lang.leaves(node))


def requires_summary(node: lang.Node) -> bool:
    """Whether only subjects with a summary row (that is, with events) can match."""
    if isinstance(node, lang.All):
        return any(requires_summary(c) for c in node.children)
    if isinstance(node, lang.AnyOf):
        return all(requires_summary(c) for c in node.children)
    if isinstance(node, lang.Not):
        return False
    if isinstance(node, lang.SegmentRef):
        return requires_summary(node.node)
    if isinstance(node, lang.Trait):
        return False
    if isinstance(node, lang.EventCond):
        if node.op in ("first", "stopped"):
            return True
        return not zero_matches(node.op, node.count)
    if node.metric == "open_complaints":
        return False
    if node.metric == "activity_change":
        return True
    return not zero_matches(node.op, node.value)


def predicate(
    node: lang.Node, at: Clock, ids: Any = None, *, joined: bool = True
) -> ColumnElement[bool]:
    """The condition as a boolean; `ids` is the subject id column of the query's root, and
    `joined` says whether subject_summary's columns are in its FROM (population() or itself)."""
    ids = PROFILE.c.id if ids is None else ids
    if isinstance(node, lang.All):
        return and_(*(predicate(c, at, ids, joined=joined) for c in node.children))
    if isinstance(node, lang.AnyOf):
        return or_(*(predicate(c, at, ids, joined=joined) for c in node.children))
    if isinstance(node, lang.Not):
        child = node.child
        while isinstance(child, lang.SegmentRef):
            child = child.node
        if not joined and isinstance(child, lang.Trait | lang.EventCond | lang.Metric):
            leaf = compile_leaf(child, at, ids)
            if leaf.summary and not leaf.empty:
                # NOT EXISTS, not NOT IN: PostgreSQL turns it into a hash anti-join.
                return ~exists().where(SUMMARY.c.subject_id == ids, leaf.predicate)
        return not_(predicate(node.child, at, ids, joined=joined))
    if isinstance(node, lang.SegmentRef):
        return predicate(node.node, at, ids, joined=joined)
    leaf = compile_leaf(node, at, ids)
    if not leaf.summary or joined:
        return leaf.predicate
    if leaf.empty:
        # NOT EXISTS, not NOT IN: PostgreSQL turns it into a (parallel) hash anti-join.
        held = SUMMARY.c.subject_id == ids
        failing = leaf.complement if leaf.complement is not None else not_(leaf.predicate)
        return ~exists().where(held, failing)
    return cast(ColumnElement[bool], ids.in_(select(SUMMARY.c.subject_id).where(leaf.predicate)))


@dataclass(frozen=True, slots=True)
class Compiled:
    """A leaf: its membership test, and the values an explanation reports for one subject."""

    predicate: ColumnElement[bool]
    measures: dict[str, ColumnElement[Any]]
    # The test reads subject_summary columns; `empty` is its value for a subject without a row.
    summary: bool = False
    empty: bool = False
    # The test's negation written positively, for NOT EXISTS (a planner reads it better).
    complement: ColumnElement[bool] | None = None


def compile_leaf(leaf: lang.Leaf, at: Clock, ids: Any = None) -> Compiled:
    ids = PROFILE.c.id if ids is None else ids
    if isinstance(leaf, lang.Trait):
        return _trait(leaf)
    if isinstance(leaf, lang.EventCond):
        return _event(leaf, at, ids)
    return _metric(leaf, at, ids)


def _cmp(op: str, left: Any, right: Any) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], _PY_OPS[op](left, right))


def zero_matches(op: str, value: float) -> bool:
    """Whether a subject with nothing on record (a count or sum of 0) satisfies the test."""
    return _PY_OPS[op](0, value)


def _set(
    op: str, value: Any, subjects: Select[Any], aggregate: ColumnElement[Any], ids: Any
) -> ColumnElement[bool]:
    """`aggregate op value` per subject, over the rows `subjects` selects (grouped by subject):
    IN the subjects that pass, or, when a subject without rows passes, NOT IN those that fail."""
    if zero_matches(op, value):
        return cast(
            ColumnElement[bool], ids.not_in(subjects.having(not_(_cmp(op, aggregate, value))))
        )
    return cast(ColumnElement[bool], ids.in_(subjects.having(_cmp(op, aggregate, value))))


# --- traits ----------------------------------------------------------------------------------


def _trait_value(leaf: lang.Trait) -> ColumnElement[Any]:
    element = PROFILE.c.plain[leaf.field]
    if leaf.type == "number":
        return cast(ColumnElement[Any], element.as_float())
    if leaf.type == "boolean":
        return cast(ColumnElement[Any], element.as_boolean())
    return cast(ColumnElement[Any], element.as_string())


def _trait(leaf: lang.Trait) -> Compiled:
    x, v, op = _trait_value(leaf), leaf.value, leaf.op
    present = x.is_not(None)
    test: ColumnElement[bool]
    if op == "exists":
        test = present if v else x.is_(None)
    elif op == "in":
        test = and_(present, x.in_(v))
    elif op == "between":
        test = and_(present, x >= v[0], x <= v[1])
    elif op == "before":
        test = and_(present, x < v)
    elif op == "after":
        test = and_(present, x > v)
    else:
        test = and_(present, _cmp(op, x, v))
    return Compiled(test, {"value": x})


# --- events ----------------------------------------------------------------------------------


def _daily_sum(column: Any, *where: Any) -> ColumnElement[Any]:
    """The subject's sum over subject_daily rows (for one subject: explanations)."""
    return (
        select(func.coalesce(func.sum(column), 0))
        .where(DAILY.c.subject_id == PROFILE.c.id, *where)
        .scalar_subquery()
    )


def _daily_agg(fn: Any, column: Any, *where: Any) -> ColumnElement[Any]:
    return select(fn(column)).where(DAILY.c.subject_id == PROFILE.c.id, *where).scalar_subquery()


def _event(leaf: lang.EventCond, at: Clock, ids: Any) -> Compiled:
    s, d = SUMMARY.c, DAILY.c
    days = leaf.within_days
    where: list[ColumnElement[bool]] = [] if leaf.event == "*" else [d.name == leaf.event]
    if days is not None:
        where.append(d.day >= at.since_day(days))
    if leaf.op == "first":
        assert days is not None
        if leaf.event == "*":
            return Compiled(
                and_(s.first_seen.is_not(None), s.first_seen >= at.since(days)),
                {"first_seen": s.first_seen},
                summary=True,
            )
        named = [d.name == leaf.event]
        first = select(d.subject_id).where(*named).group_by(d.subject_id)
        return Compiled(
            ids.in_(first.having(func.min(d.day) >= at.since_day(days))),
            {"first_day": _daily_agg(func.min, d.day, *named)},
        )
    if leaf.op == "stopped":
        assert days is not None
        if leaf.event == "*":
            return Compiled(
                and_(s.last_seen.is_not(None), s.last_seen < at.since(days)),
                {"last_seen": s.last_seen},
                summary=True,
            )
        named = [d.name == leaf.event]
        last = select(d.subject_id).where(*named).group_by(d.subject_id)
        return Compiled(
            ids.in_(last.having(func.max(d.day) < at.since_day(days))),
            {"last_day": _daily_agg(func.max, d.day, *named)},
        )
    op, n = leaf.op, leaf.count
    if leaf.event == "*" and days is None:
        events = func.coalesce(s.events, 0)
        return Compiled(
            _cmp(op, events, n), {"count": events}, summary=True, empty=zero_matches(op, n)
        )
    if leaf.event == "*" and days is not None:
        # "at least once" and "never" in a window are exact from last_seen.
        recent = and_(s.last_seen.is_not(None), s.last_seen >= at.since(days))
        if (op, n) in (("gte", 1), ("gt", 0)):
            return Compiled(recent, {"last_seen": s.last_seen}, summary=True)
        if (op, n) in (("eq", 0), ("lt", 1), ("lte", 0)):
            return Compiled(
                not_(recent),
                {"last_seen": s.last_seen},
                summary=True,
                empty=True,
                complement=recent,
            )
    subjects = select(d.subject_id).where(*where).group_by(d.subject_id)
    return Compiled(
        _set(op, n, subjects, func.sum(d.count), ids),
        {"count": _daily_sum(d.count, *where)},
    )


# --- metrics ---------------------------------------------------------------------------------


def _ring_sum(tag: str, value: str, slots: int, low: int, high: int) -> ColumnElement[Any]:
    """The values of periods low..high: period p can only be in slot p % slots, so one
    equality test per period (fewer terms than slots for a short window)."""
    assert high - low < slots
    c = SUMMARY.c
    terms = [
        case(
            (c[f"{tag}{p % slots}"] == p, func.coalesce(c[f"{value}{p % slots}"], 0)),
            else_=0,
        )
        for p in range(low, high + 1)
    ]
    total: ColumnElement[Any] = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def months_sum(value: str, at: Clock, n: int) -> ColumnElement[Any]:
    """Revenue (mr) or orders (mo) of the current calendar month and the n - 1 before it."""
    return _ring_sum("m", value, MONTH_SLOTS, at.month - n + 1, at.month)


def weeks_activity(at: Clock, n: int) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Events in the n completed weeks before this one, and in the n weeks before those."""
    w = at.week
    current = _ring_sum("w", "wa", WEEK_SLOTS, w - n, w - 1)
    previous = _ring_sum("w", "wa", WEEK_SLOTS, w - 2 * n, w - n - 1)
    return current, previous


def _change(op: str, value: float, current: Any, previous: Any) -> ColumnElement[bool]:
    # (current - previous) / previous * 100 op value, without dividing: previous > 0.
    return and_(previous > 0, _cmp(op, (current - previous) * 100, literal(value) * previous))


def _metric(leaf: lang.Metric, at: Clock, ids: Any) -> Compiled:
    s, d = SUMMARY.c, DAILY.c
    op, v = leaf.op, _whole(leaf.value)
    if leaf.metric in ("revenue", "orders"):
        # Exact types: a float against an integer column makes PostgreSQL compare as numeric
        # and misjudge how many rows match.
        money: Any = Decimal(str(v)) if leaf.metric == "revenue" else _whole(v)
        if leaf.window == "days":
            assert leaf.n is not None
            since = d.day >= at.since_day(leaf.n)
            subjects = select(d.subject_id).where(since).group_by(d.subject_id)
            return Compiled(
                _set(op, money, subjects, func.sum(d.revenue), ids),
                {"value": _daily_sum(d.revenue, since)},
            )
        if leaf.window == "months":
            assert leaf.n is not None
            total = months_sum("mr" if leaf.metric == "revenue" else "mo", at, leaf.n)
            test = _cmp(op, total, money)
        else:
            # The column itself, not COALESCE(column, 0) (NULL without a summary row):
            # PostgreSQL estimates a column test from its statistics, a COALESCE as 0.5 %,
            # which turned large member lists into nested loops.
            column = s.revenue if leaf.metric == "revenue" else s.orders
            total = func.coalesce(column, 0)
            test = (
                or_(column.is_(None), _cmp(op, column, money))
                if zero_matches(op, v)
                else and_(column.is_not(None), _cmp(op, column, money))
            )
        return Compiled(test, {"value": total}, summary=True, empty=zero_matches(op, v))
    if leaf.metric == "activity_change":
        assert leaf.n is not None
        if leaf.window == "weeks":
            current, previous = weeks_activity(at, leaf.n)
            return Compiled(
                _change(op, v, current, previous),
                {"current": current, "previous": previous},
                summary=True,
            )
        start, split = at.since_day(2 * leaf.n), at.since_day(leaf.n)
        cur = func.sum(case((d.day >= split, d.count), else_=0))
        prev = func.sum(case((d.day < split, d.count), else_=0))
        subjects = select(d.subject_id).where(d.day >= start).group_by(d.subject_id)
        return Compiled(
            ids.in_(subjects.having(_change(op, v, cur, prev))),
            {
                "current": _daily_sum(d.count, d.day >= split),
                "previous": _daily_sum(d.count, d.day >= start, d.day < split),
            },
        )
    f = FEEDBACK.c
    complaint = [f.kind == "complaint", f.status.in_(OPEN_COMPLAINT)]
    subjects = select(f.subject_id).where(*complaint).group_by(f.subject_id)
    value = (
        select(func.count())
        .select_from(FEEDBACK)
        .where(f.subject_id == PROFILE.c.id, *complaint)
        .scalar_subquery()
    )
    return Compiled(_set(op, v, subjects, func.count(), ids), {"value": value})


def always(member: bool) -> ColumnElement[bool]:
    return true() if member else false()


def _whole(value: float) -> float | int:
    return int(value) if isinstance(value, float) and value.is_integer() else value
