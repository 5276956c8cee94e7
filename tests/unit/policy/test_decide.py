"""policy.decide against the demo policy: scope, purpose, role and field rules, then the
legal-basis rules for one subject (consent, separate consent, guardian, restriction, opt-out)."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from cdp.auth.principal import Principal
from cdp.errors import (
    ConsentRequired,
    FieldNotAllowed,
    GuardianConsentRequired,
    InsufficientScope,
    PersonalisationOptedOut,
    ProcessingRestricted,
    PurposeMissing,
    PurposeNotAllowed,
    SeparateConsentRequired,
    UnknownPurpose,
    ValidationFailed,
)
from cdp.policy import (
    NO_RECORD,
    ConsentGrant,
    Policy,
    SubjectState,
    decide,
    for_subject,
    load_policy,
)

DEMO = Path(__file__).resolve().parents[3] / "policies"
AT = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEMO)


def client(*purposes: str, scopes: tuple[str, ...] = ("profiles:read",)) -> Principal:
    return Principal(
        kind="client",
        id="cli_test",
        role="app",
        scopes=frozenset(scopes),
        purposes=frozenset(purposes),
    )


def test_missing_scope_is_refused_first(policy: Policy) -> None:
    with pytest.raises(InsufficientScope):
        decide(policy, client("marketing"), None, required_scope="profiles:write")


@pytest.mark.parametrize("purpose", [None, ""])
def test_missing_purpose(policy: Policy, purpose: str | None) -> None:
    with pytest.raises(PurposeMissing):
        decide(policy, client("marketing"), purpose, required_scope="profiles:read")


def test_unknown_purpose_names_it(policy: Policy) -> None:
    with pytest.raises(UnknownPurpose, match="'lottery'"):
        decide(policy, client("*"), "lottery")


def test_purpose_not_allowed_for_client(policy: Policy) -> None:
    with pytest.raises(PurposeNotAllowed) as caught:
        decide(policy, client("analytics"), "marketing", subject="sub_1")
    assert caught.value.status == 403
    assert caught.value.audit == {"subject": "sub_1"}


def test_star_allows_every_purpose(policy: Policy) -> None:
    for purpose in policy.purposes:
        assert decide(policy, client("*"), purpose).purpose == purpose


def test_all_fields_filtered_by_category(policy: Policy) -> None:
    decision = decide(policy, client("analytics"), "analytics", subject="sub_1")
    # PIPL art. 6: analytics has no contact category, so no e-mail or phone.
    assert {"email", "phone", "name"}.isdisjoint(decision.allowed_fields)
    assert {"city", "gender", "membership_level"} <= decision.allowed_fields
    assert {"email", "phone", "id_card_number"} <= decision.denied_fields
    assert decision.allowed_fields | decision.denied_fields == set(policy.fields)
    assert decision.subject == "sub_1"


def test_requested_fields_within_purpose(policy: Policy) -> None:
    decision = decide(policy, client("marketing"), "marketing", fields=["email", "city"])
    assert decision.allowed_fields == {"email", "city"}
    assert decision.denied_fields == frozenset()


def test_field_outside_purpose_is_refused_by_name(policy: Policy) -> None:
    with pytest.raises(FieldNotAllowed) as caught:
        decide(
            policy,
            client("marketing"),
            "marketing",
            subject="sub_1",
            fields=["email", "id_card_number", "precise_location"],
        )
    assert "id_card_number, precise_location" in caught.value.detail
    assert "email" not in caught.value.detail
    assert caught.value.audit == {
        "subject": "sub_1",
        "fields": ["id_card_number", "precise_location"],
    }


def test_unknown_field_is_a_validation_error(policy: Policy) -> None:
    with pytest.raises(ValidationFailed, match="shoe_size"):
        decide(policy, client("marketing"), "marketing", fields=["email", "shoe_size"])


def test_fields_as_a_bare_string_is_a_programming_error(policy: Policy) -> None:
    with pytest.raises(TypeError):
        decide(policy, client("marketing"), "marketing", fields="email")


def grant(
    notice: str = "privacy-notice",
    version: int = 1,
    *,
    state: str = "granted",
    separate: bool = False,
    guardian: bool = False,
) -> ConsentGrant:
    return ConsentGrant(state, notice, version, separate, guardian, AT)  # type: ignore[arg-type]


def state(consents: dict[str, ConsentGrant] | None = None, **flags: bool) -> SubjectState:
    return SubjectState(consents=MappingProxyType(consents or {}), **flags)


def test_without_state_the_policy_alone_decides(policy: Policy) -> None:
    # List endpoints decide once for the policy, then check each row's subject.
    assert decide(policy, client("marketing"), "marketing").purpose == "marketing"


def test_art13_contract_basis_needs_no_consent(policy: Policy) -> None:
    decision = decide(
        policy, client("service_delivery"), "service_delivery", subject="s", state=NO_RECORD
    )
    assert "email" in decision.allowed_fields


def test_art13_consent_basis_needs_a_grant(policy: Policy) -> None:
    with pytest.raises(ConsentRequired, match="no consent on record") as caught:
        decide(policy, client("marketing"), "marketing", subject="s", state=NO_RECORD)
    assert caught.value.status == 403 and caught.value.code == "consent_required"
    assert caught.value.audit == {"subject": "s", "purpose": "marketing", "fields": []}
    allowed = decide(
        policy, client("marketing"), "marketing", subject="s", state=state({"marketing": grant()})
    )
    assert "email" in allowed.allowed_fields


@pytest.mark.parametrize("gone", ["withdrawn", "refused"])
def test_art15_withdrawn_or_refused_consent_does_not_count(policy: Policy, gone: str) -> None:
    with pytest.raises(ConsentRequired, match=gone):
        decide(
            policy,
            client("marketing"),
            "marketing",
            subject="s",
            state=state({"marketing": grant(state=gone)}),
        )


def test_consent_to_another_notice_does_not_count(policy: Policy) -> None:
    with pytest.raises(ConsentRequired, match="location-notice"):
        decide(
            policy,
            client("marketing"),
            "marketing",
            subject="s",
            state=state({"marketing": grant("location-notice")}),
        )


def _bumped(tmp_path: Path, reconsent: str) -> Policy:
    """The demo policy with a version 3 of the privacy notice that asks for consent again."""
    copy = tmp_path / "policies"
    shutil.copytree(DEMO, copy)
    notice = copy / "notices" / "privacy-notice.yaml"
    text = notice.read_text(encoding="utf-8")
    last = text[text.index("  - version: 2") :]
    bumped = last.replace("version: 2", "version: 3", 1).replace(
        "reconsent: false", f"reconsent: {reconsent}", 1
    )
    notice.write_text(text + "\n" + bumped, encoding="utf-8")
    return load_policy(copy)


def test_art14_reconsent_version_retires_older_consents(tmp_path: Path) -> None:
    bumped = _bumped(tmp_path, "[marketing]")
    assert bumped.consent_floor("marketing") == 3 and bumped.consent_floor("analytics") == 1
    old = state({"marketing": grant(version=2), "analytics": grant(version=1)})
    with pytest.raises(ConsentRequired, match=r"PIPL art\. 14"):
        decide(bumped, client("marketing"), "marketing", subject="s", state=old)
    # Purposes the new version does not ask about keep their consents.
    decide(bumped, client("analytics"), "analytics", subject="s", state=old)
    fresh = state({"marketing": grant(version=3)})
    decide(bumped, client("marketing"), "marketing", subject="s", state=fresh)


def test_reconsent_true_covers_every_listed_purpose(tmp_path: Path) -> None:
    bumped = _bumped(tmp_path, "true")
    assert {bumped.consent_floor(p) for p in ("customer_care", "analytics", "marketing")} == {3}
    assert bumped.consent_floor("nearby_stores") == 1


@pytest.mark.parametrize(
    ("purpose", "notice"),
    [
        ("third_party_sharing", "partner-sharing-notice"),
        ("cross_border_transfer", "cross-border-notice"),
        ("nearby_stores", "location-notice"),
    ],
)
def test_art23_39_general_consent_does_not_unlock_separate_purposes(
    policy: Policy, purpose: str, notice: str
) -> None:
    general = state({purpose: grant(notice)})
    with pytest.raises(SeparateConsentRequired):
        decide(policy, client(purpose), purpose, subject="s", state=general)
    separate = state({purpose: grant(notice, separate=True)})
    assert decide(policy, client(purpose), purpose, subject="s", state=separate).purpose == purpose


def _with_sensitive_analytics(policy: Policy) -> Policy:
    """analytics allowed to touch financial data: sensitive, yet no separate_consent flag."""
    spec = policy.purposes["analytics"]
    widened = spec.model_copy(update={"categories": [*spec.categories, "financial"]})
    return dataclasses.replace(policy, purposes={**policy.purposes, "analytics": widened})


def test_art28_29_sensitive_fields_withheld_without_separate_consent(policy: Policy) -> None:
    wide = _with_sensitive_analytics(policy)
    general = state({"analytics": grant()})
    decision = decide(wide, client("analytics"), "analytics", subject="s", state=general)
    assert "bank_card_last4" in decision.denied_fields
    assert "bank_card_last4" not in decision.allowed_fields and "city" in decision.allowed_fields
    with pytest.raises(SeparateConsentRequired) as caught:
        decide(
            wide,
            client("analytics"),
            "analytics",
            subject="s",
            fields=["city", "bank_card_last4"],
            state=general,
        )
    assert caught.value.audit is not None and caught.value.audit["fields"] == ["bank_card_last4"]
    separate = state({"analytics": grant(separate=True)})
    decision = decide(wide, client("analytics"), "analytics", subject="s", state=separate)
    assert "bank_card_last4" in decision.allowed_fields


def test_art31_minor_needs_guardian_consent(policy: Policy) -> None:
    minor = state({"marketing": grant()}, minor=True)
    with pytest.raises(GuardianConsentRequired, match="under 14"):
        decide(policy, client("marketing"), "marketing", subject="s", state=minor)
    guarded = state({"marketing": grant(guardian=True)}, minor=True)
    decide(policy, client("marketing"), "marketing", subject="s", state=guarded)
    # A contract needs no consent record, a minor's neither.
    decide(policy, client("service_delivery"), "service_delivery", subject="s", state=minor)


def test_art44_47_restriction_leaves_storage_and_legal_obligations(policy: Policy) -> None:
    restricted = state(
        {p: grant(policy.purposes[p].notice or "", separate=True) for p in policy.purposes},
        restricted=True,
    )
    allowed = set()
    for purpose in policy.purposes:
        try:
            decide(policy, client("*"), purpose, subject="s", state=restricted)
            allowed.add(purpose)
        except ProcessingRestricted as exc:
            assert exc.audit is not None and exc.audit["subject"] == "s"
    assert allowed == {"storage", "legal_compliance"}


def test_art24_opt_out_excludes_personalisation_only(policy: Policy) -> None:
    opted = state({"marketing": grant(), "analytics": grant()}, personalisation_opt_out=True)
    with pytest.raises(PersonalisationOptedOut, match=r"art\. 24"):
        decide(policy, client("marketing"), "marketing", subject="s", state=opted)
    decide(policy, client("analytics"), "analytics", subject="s", state=opted)


def test_rules_apply_in_order(policy: Policy) -> None:
    everything_wrong = state(restricted=True, personalisation_opt_out=True, minor=True)
    with pytest.raises(ProcessingRestricted):
        decide(policy, client("marketing"), "marketing", subject="s", state=everything_wrong)
    with pytest.raises(PersonalisationOptedOut):
        decide(
            policy,
            client("marketing"),
            "marketing",
            subject="s",
            state=state(personalisation_opt_out=True, minor=True),
        )
    # Policy checks come first: a client without the purpose never learns the subject's state.
    with pytest.raises(PurposeNotAllowed):
        decide(policy, client("analytics"), "marketing", subject="s", state=everything_wrong)


def test_for_subject_narrows_a_policy_decision(policy: Policy) -> None:
    decision = decide(policy, client("marketing"), "marketing")
    row = dataclasses.replace(decision, subject="s2")
    assert for_subject(policy, row, state({"marketing": grant()})) == row
    with pytest.raises(ConsentRequired):
        for_subject(policy, row, NO_RECORD)
