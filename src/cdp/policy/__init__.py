"""Policy as code: purposes, fields and roles loaded from YAML, and the decision built on them."""

from cdp.policy.decide import Decision, SubjectCheck, decide, register_subject_check, subject_checks
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
from cdp.policy.scopes import KNOWN_SCOPES

__all__ = [
    "KNOWN_SCOPES",
    "Category",
    "Decision",
    "FieldSpec",
    "Policy",
    "PolicyInvalid",
    "PolicyIssue",
    "PolicySettings",
    "Purpose",
    "Role",
    "SubjectCheck",
    "UnknownRole",
    "decide",
    "load_policy",
    "register_subject_check",
    "subject_checks",
]
