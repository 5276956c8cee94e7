"""Privacy notices (policies/notices/*.yaml): versioned texts that consents bind to.

PIPL art. 17 names what a notice must say before collection: the processor's identity and
contact, purposes and methods, the kinds of PI, the retention period, and how to exercise
rights; art. 23 and 39 add the recipient when PI goes to another processor or abroad. A
version marked `reconsent: true` makes consents given to older versions stop counting for the
purposes it lists, `reconsent: [purpose, ...]` for those only (art. 14: new consent when
purpose, method or kind of PI changes).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from cdp.policy.model import Identifier, PolicyIssue, Purpose
from cdp.policy.source import LocatedYaml

NoticeId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$", max_length=64)]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=20_000, strip_whitespace=True)]

# Every notice is published in both; consent evidence names the one the customer saw.
REQUIRED_LOCALES = ("zh-CN", "en")
NOTICES_DIR = "notices"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoticeSections(_Spec):
    """The sections of one notice text; the first seven are what PIPL art. 17 requires."""

    processor: Text
    contact: Text
    purposes: Text
    methods: Text
    pi_types: Text
    retention: Text
    rights: Text
    # Art. 23 / 39: who receives the PI (name, contact, purpose, kinds); required by the check
    # when the notice covers a third-party or cross-border purpose.
    recipients: Text | None = None
    # Art. 31: the rules for children under 14.
    minors: Text | None = None


class NoticeText(_Spec):
    """A notice version in one language."""

    title: Text
    sections: NoticeSections


class NoticeVersion(_Spec):
    """One published version; never edited once consents bind to it, superseded by the next."""

    version: int = Field(ge=1)
    published: date
    # true: every purpose listed needs consent again; a list: only those purposes.
    reconsent: bool | list[Identifier] = False
    changes: Text | None = None
    purposes: list[Identifier] = Field(min_length=1)
    texts: dict[Locale, NoticeText]

    def asks_again(self, purpose: str) -> bool:
        """Consents to older versions stop counting for purpose from this version on."""
        if isinstance(self.reconsent, list):
            return purpose in self.reconsent
        return self.reconsent and purpose in self.purposes

    @model_validator(mode="after")
    def _reconsent_listed(self) -> NoticeVersion:
        if isinstance(self.reconsent, list):
            outside = [p for p in self.reconsent if p not in self.purposes]
            if outside:
                raise ValueError(f"reconsent names purposes not listed: {', '.join(outside)}")
        return self

    @field_validator("texts")
    @classmethod
    def _both_languages(cls, texts: dict[str, NoticeText]) -> dict[str, NoticeText]:
        missing = [locale for locale in REQUIRED_LOCALES if locale not in texts]
        if missing:
            raise ValueError(f"texts needs the {' and '.join(missing)} text")
        return texts


class Notice(_Spec):
    """A notice and all its versions, oldest first."""

    id: NoticeId
    names: dict[str, str]
    versions: list[NoticeVersion] = Field(min_length=1)

    @property
    def latest(self) -> NoticeVersion:
        return self.versions[-1]

    def version(self, number: int) -> NoticeVersion | None:
        return next((v for v in self.versions if v.version == number), None)

    def reconsent_floor(self, purpose: str) -> int:
        """The oldest version whose consents still count for purpose."""
        marked = [v.version for v in self.versions if v.asks_again(purpose)]
        return max(marked, default=self.versions[0].version)


def text_sha256(notice_id: str, version: NoticeVersion, locale: str) -> str:
    """Hash of the text a customer is shown; consent evidence carries it (art. 14: informed)."""
    text = version.texts[locale]
    canonical = {
        "notice": notice_id,
        "version": version.version,
        "locale": locale,
        "title": text.title,
        "sections": text.sections.model_dump(exclude_none=True),
    }
    raw = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def check_notice(name: str, doc: LocatedYaml, notice: Notice, stem: str) -> list[PolicyIssue]:
    """Rules inside one notice file: its id is its file name, versions only go up."""
    issues: list[PolicyIssue] = []
    if notice.id != stem:
        issues.append(
            PolicyIssue(name, doc.line_of(("id",)), f"id {notice.id!r} must match the file name")
        )
    for index in range(1, len(notice.versions)):
        before, this = notice.versions[index - 1], notice.versions[index]
        if this.version <= before.version:
            issues.append(
                PolicyIssue(
                    name,
                    doc.line_of(("versions", index, "version")),
                    f"version {this.version} must be greater than {before.version} above it",
                )
            )
        if this.published < before.published:
            issues.append(
                PolicyIssue(
                    name,
                    doc.line_of(("versions", index, "published")),
                    f"version {this.version} is published before version {before.version}",
                )
            )
    return issues


def check_references(
    notices: dict[str, tuple[str, LocatedYaml, Notice]],
    present: set[str],
    purposes: list[tuple[int, Purpose]],
    purpose_line: Any,
    known_purposes: set[str],
) -> list[PolicyIssue]:
    """Notices and purposes agree: every named notice exists and describes its purposes.

    present holds the ids of every notice file, valid or not, so that one broken notice is
    reported once, not again by each purpose naming it. purpose_line(index, key) gives the
    purposes.yaml line of a purpose's key.
    """
    issues: list[PolicyIssue] = []
    for index, spec in purposes:
        if spec.notice is not None and spec.notice not in present:
            known = ", ".join(sorted(present)) or "none"
            issues.append(
                PolicyIssue(
                    "purposes.yaml",
                    purpose_line(index, "notice"),
                    f"purpose {spec.id!r} names notice {spec.notice!r}, which"
                    f" {NOTICES_DIR}/ does not hold (notices: {known})",
                )
            )
    by_id = {spec.id: spec for _, spec in purposes}
    for notice_id, (name, doc, notice) in notices.items():
        for v_index, version in enumerate(notice.versions):
            for p_index, purpose in enumerate(version.purposes):
                if known_purposes and purpose not in known_purposes:
                    issues.append(
                        PolicyIssue(
                            name,
                            doc.line_of(("versions", v_index, "purposes", p_index)),
                            f"version {version.version} lists unknown purpose {purpose!r}",
                        )
                    )
        last = len(notice.versions) - 1
        latest = notice.latest
        bound = [s for s in by_id.values() if s.notice == notice_id]
        for spec in bound:
            if spec.id not in latest.purposes:
                issues.append(
                    PolicyIssue(
                        name,
                        doc.line_of(("versions", last, "purposes")),
                        f"version {latest.version} must describe purpose {spec.id!r}, whose"
                        " consents bind to this notice (PIPL art. 17)",
                    )
                )
        # The notice a sharing purpose's consents bind to must name who receives the PI.
        sharing = [s.id for s in bound if s.third_party or s.cross_border]
        if sharing:
            for locale, text in latest.texts.items():
                if text.sections.recipients is None:
                    issues.append(
                        PolicyIssue(
                            name,
                            doc.line_of(("versions", last, "texts", locale, "sections")),
                            f"{locale} text needs a `recipients` section for"
                            f" {', '.join(sharing)} (PIPL art. 23, 39)",
                        )
                    )
    return issues
