"""policy.decide against the demo policy: scope, purpose, role and field rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdp.auth.principal import Principal
from cdp.errors import (
    FieldNotAllowed,
    InsufficientScope,
    PurposeMissing,
    PurposeNotAllowed,
    UnknownPurpose,
    ValidationFailed,
)
from cdp.policy import (
    Policy,
    Purpose,
    decide,
    load_policy,
    register_subject_check,
    subject_checks,
)

DEMO = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEMO)


@pytest.fixture
def hooks() -> Iterator[None]:
    """Subject checks registered during a test are removed after it."""
    saved = list(subject_checks)
    yield
    subject_checks[:] = saved


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


@pytest.mark.usefixtures("hooks")
def test_subject_checks_run_last_and_can_deny(policy: Policy) -> None:
    seen: list[tuple[str, str | None]] = []

    def record(_: Policy, __: Principal, purpose: Purpose, subject: str | None) -> None:
        seen.append((purpose.id, subject))
        if subject == "sub_withdrawn":
            raise PurposeNotAllowed("consent withdrawn")

    assert register_subject_check(record) is record
    register_subject_check(record)  # registering twice still runs it once
    decide(policy, client("customer_care"), "customer_care", subject="sub_1")
    assert seen == [("customer_care", "sub_1")]
    with pytest.raises(PurposeNotAllowed, match="withdrawn"):
        decide(policy, client("customer_care"), "customer_care", subject="sub_withdrawn")
    # A request already refused by policy never reaches the subject checks.
    with pytest.raises(PurposeNotAllowed):
        decide(policy, client("analytics"), "customer_care", subject="sub_2")
    assert [s for _, s in seen] == ["sub_1", "sub_withdrawn"]
