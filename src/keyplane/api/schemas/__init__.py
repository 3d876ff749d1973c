"""Request and response bodies of the management API, one module per subject.

Answers read the service records directly (``KeyOut.model_validate(record)``,
see :class:`~keyplane.api.schemas.base.FromRecord`): a record's field is on
the wire under its own name unless the model says otherwise. Import from here.
"""

from __future__ import annotations

from keyplane.api.schemas.audit import AuditEventOut
from keyplane.api.schemas.base import FromRecord, Health, PageOut, Strict, Timestamp
from keyplane.api.schemas.keys import (
    CreatedKeyOut,
    KeyCreate,
    KeyOut,
    KeyRoll,
    KeyUpdate,
    QuotaIn,
    QuotaOut,
    RateLimitIn,
    RateLimitOut,
    UsageBucketOut,
    UsageOut,
)
from keyplane.api.schemas.leaks import LeakReportItem, LeakVerdictOut
from keyplane.api.schemas.policies import (
    DryRunGroupOut,
    DryRunOut,
    KeyPolicyChange,
    KeyPolicyOut,
    TouchedKeyOut,
)
from keyplane.api.schemas.problems import ProblemOut, problem_responses
from keyplane.api.schemas.projects import ProjectCreate, ProjectOut
from keyplane.api.schemas.verify import AllowanceOut, VerifyRequest, VerifyResponse, WhoAmI
from keyplane.api.schemas.webhooks import (
    CreatedWebhookOut,
    WebhookAttemptOut,
    WebhookCreate,
    WebhookDeliveryDetailOut,
    WebhookDeliveryOut,
    WebhookOut,
    WebhookRotate,
    WebhookUpdate,
)

__all__ = [
    "AllowanceOut",
    "AuditEventOut",
    "CreatedKeyOut",
    "CreatedWebhookOut",
    "DryRunGroupOut",
    "DryRunOut",
    "FromRecord",
    "Health",
    "KeyCreate",
    "KeyOut",
    "KeyPolicyChange",
    "KeyPolicyOut",
    "KeyRoll",
    "KeyUpdate",
    "LeakReportItem",
    "LeakVerdictOut",
    "PageOut",
    "ProblemOut",
    "ProjectCreate",
    "ProjectOut",
    "QuotaIn",
    "QuotaOut",
    "RateLimitIn",
    "RateLimitOut",
    "Strict",
    "Timestamp",
    "TouchedKeyOut",
    "UsageBucketOut",
    "UsageOut",
    "VerifyRequest",
    "VerifyResponse",
    "WebhookAttemptOut",
    "WebhookCreate",
    "WebhookDeliveryDetailOut",
    "WebhookDeliveryOut",
    "WebhookOut",
    "WebhookRotate",
    "WebhookUpdate",
    "WhoAmI",
    "problem_responses",
]
