"""Governance: users and API keys, per-cube grants, the audit log, retention, PII and the
poisoning guard.

- ``access``: the one function deciding allow/deny (role, ownership, grant, operation);
- ``api``: what ``MemOS`` gains (users, keys, grants, audit, retention, forgetting) and the
  permission-checking, audited view ``MemOS.as_user`` returns;
- ``pii`` and ``guard``: what the write path runs on every memory's text.
"""

from memkern.models import (
    ApiKey,
    AuditEntry,
    AuditResult,
    CubePolicy,
    Grant,
    Permission,
    RetentionReport,
    Role,
    User,
)

__all__ = ["ApiKey", "AuditEntry", "AuditResult", "CubePolicy", "Grant", "Permission", "RetentionReport", "Role",
           "User"]
