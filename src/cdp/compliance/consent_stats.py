"""Consent rates per purpose and notice version (PIPL art. 14, 15): over subjects, each
counted once per purpose by their latest consent record; a split over fewer than k subjects
is suppressed (cdp.metrics.kanon)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cdp.consent.models import ConsentRecord
from cdp.db import utcnow
from cdp.metrics.kanon import Cell, cell
from cdp.policy import Policy

STATES = ("granted", "withdrawn", "refused")


@dataclass(frozen=True, slots=True)
class VersionStats:
    """Subjects whose latest consent for the purpose was given on this notice version."""

    purpose: str
    notice_id: str
    notice_version: int
    current: bool  # at or above the purpose's re-consent floor: such consents still count
    subjects: Cell
    granted: Cell
    withdrawn: Cell
    refused: Cell
    grant_rate: Cell


@dataclass(frozen=True, slots=True)
class PurposeStats:
    purpose: str
    subjects: Cell
    granted: Cell  # latest state granted on a version that still counts
    grant_rate: Cell
    versions: list[VersionStats]


@dataclass(frozen=True, slots=True)
class ConsentStats:
    generated_at: datetime
    k: int
    purposes: list[PurposeStats]


def consent_stats(session: Session, *, policy: Policy) -> ConsentStats:
    """Latest record per (subject, purpose), grouped by purpose, notice version and state."""
    k = policy.settings.k_anonymity
    ranked = select(
        ConsentRecord.purpose,
        ConsentRecord.notice_id,
        ConsentRecord.notice_version,
        ConsentRecord.state,
        func.row_number()
        .over(
            partition_by=(ConsentRecord.subject_id, ConsentRecord.purpose),
            order_by=(ConsentRecord.at.desc(), ConsentRecord.id.desc()),
        )
        .label("rank"),
    ).subquery()
    stmt = (
        select(
            ranked.c.purpose,
            ranked.c.notice_id,
            ranked.c.notice_version,
            ranked.c.state,
            func.count(),
        )
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.purpose, ranked.c.notice_id, ranked.c.notice_version, ranked.c.state)
    )
    counts: dict[str, dict[tuple[str, int], dict[str, int]]] = {}
    for purpose, notice_id, version, state, n in session.execute(stmt):
        by_version = counts.setdefault(purpose, {}).setdefault((notice_id, version), {})
        by_version[state] = by_version.get(state, 0) + int(n)
    purposes = [
        _purpose(pid, counts.get(pid, {}), policy, k)
        for pid in list(policy.purposes) + sorted(set(counts) - set(policy.purposes))
        if pid in counts or policy.purposes[pid].legal_basis == "consent"
    ]
    return ConsentStats(generated_at=utcnow(), k=k, purposes=purposes)


def _purpose(
    pid: str, versions: dict[tuple[str, int], dict[str, int]], policy: Policy, k: int
) -> PurposeStats:
    floor = policy.consent_floor(pid) if pid in policy.purposes else 1
    rows = []
    total = granted_current = 0
    for (notice_id, version), states in sorted(versions.items()):
        subjects = sum(states.values())
        total += subjects
        current = version >= floor
        if current:
            granted_current += states.get("granted", 0)
        rate = states.get("granted", 0) / subjects if subjects else None
        rows.append(
            VersionStats(
                purpose=pid,
                notice_id=notice_id,
                notice_version=version,
                current=current,
                subjects=cell(subjects, subjects=subjects, k=k),
                granted=cell(states.get("granted", 0), subjects=subjects, k=k),
                withdrawn=cell(states.get("withdrawn", 0), subjects=subjects, k=k),
                refused=cell(states.get("refused", 0), subjects=subjects, k=k),
                grant_rate=cell(_round(rate), subjects=subjects, k=k),
            )
        )
    rate = granted_current / total if total else None
    return PurposeStats(
        purpose=pid,
        subjects=cell(total, subjects=total, k=k),
        granted=cell(granted_current, subjects=total, k=k),
        grant_rate=cell(_round(rate), subjects=total, k=k),
        versions=rows,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


CSV_COLUMNS = (
    "purpose",
    "notice_id",
    "notice_version",
    "current",
    "subjects",
    "granted",
    "withdrawn",
    "refused",
    "grant_rate",
)


def csv_rows(stats: ConsentStats) -> Iterator[list[object]]:
    """One row per purpose and notice version, then one per purpose (notice_version `all`);
    a suppressed cell is empty."""
    for p in stats.purposes:
        for v in p.versions:
            yield [
                p.purpose,
                v.notice_id,
                v.notice_version,
                "true" if v.current else "false",
                *(_value(c) for c in (v.subjects, v.granted, v.withdrawn, v.refused, v.grant_rate)),
            ]
        yield [
            p.purpose,
            "",
            "all",
            "",
            _value(p.subjects),
            _value(p.granted),
            "",
            "",
            _value(p.grant_rate),
        ]


def _value(c: Cell) -> object:
    return "" if c.suppressed or c.value is None else c.value
