"""Imports every domain's ORM models so Base.metadata is complete (Alembic, drift checks)."""

from cdp.alerts.models import Alert, AlertRule, WebhookDelivery, WebhookEndpoint
from cdp.audit.models import AuditCheckpoint, AuditEntry, AuditKey
from cdp.auth.models import Client, Source
from cdp.consent.models import ConsentCurrent, ConsentRecord, CrossBorderTransfer, SubjectStatus
from cdp.events.models import (
    AnonymousVisitor,
    Event,
    EventMessage,
    PlanViolation,
    SubjectDaily,
)
from cdp.feedback.models import Feedback
from cdp.followups.models import FollowupPlan, FollowupPlanMember, FollowupTask, Interaction
from cdp.profiles.models import Identity, Profile
from cdp.retention.models import RetentionRun
from cdp.rights.models import RightsRequest, VerificationCode
from cdp.segments.models import (
    Segment,
    SegmentChange,
    SegmentMember,
    SegmentRefresh,
    SubjectSummary,
)

__all__ = [
    "Alert",
    "AlertRule",
    "AnonymousVisitor",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditKey",
    "Client",
    "ConsentCurrent",
    "ConsentRecord",
    "CrossBorderTransfer",
    "Event",
    "EventMessage",
    "Feedback",
    "FollowupPlan",
    "FollowupPlanMember",
    "FollowupTask",
    "Identity",
    "Interaction",
    "PlanViolation",
    "Profile",
    "RetentionRun",
    "RightsRequest",
    "Segment",
    "SegmentChange",
    "SegmentMember",
    "SegmentRefresh",
    "Source",
    "SubjectDaily",
    "SubjectStatus",
    "SubjectSummary",
    "VerificationCode",
    "WebhookDelivery",
    "WebhookEndpoint",
]
