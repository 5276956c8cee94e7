"""Policy as code: purposes, fields and roles loaded from YAML, and the decision built on them."""

from cdp.policy.decide import (
    NO_RECORD,
    ConsentGrant,
    ConsentState,
    Decision,
    SubjectState,
    decide,
    for_subject,
)
from cdp.policy.loader import load_policy
from cdp.policy.model import (
    Category,
    FieldSpec,
    Policy,
    PolicyInvalid,
    PolicyIssue,
    PolicySettings,
    Purpose,
    Role,
    UnknownRole,
)
from cdp.policy.notices import Notice, NoticeVersion, text_sha256
from cdp.policy.scopes import KNOWN_SCOPES

__all__ = [
    "KNOWN_SCOPES",
    "NO_RECORD",
    "Category",
    "ConsentGrant",
    "ConsentState",
    "Decision",
    "FieldSpec",
    "Notice",
    "NoticeVersion",
    "Policy",
    "PolicyInvalid",
    "PolicyIssue",
    "PolicySettings",
    "Purpose",
    "Role",
    "SubjectState",
    "UnknownRole",
    "decide",
    "for_subject",
    "load_policy",
    "text_sha256",
]
