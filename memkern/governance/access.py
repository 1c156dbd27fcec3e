"""The access policy: one function decides whether a user may run an operation on a cube.

Everything that checks permissions (the Python API, the REST and MCP servers through it)
goes through ``decide``, so that the whole policy is this table and a matrix test can
enumerate it:

- an admin (role) may do everything, on every cube;
- the cube's owner holds ``admin`` on it;
- anyone else holds what their grant on the cube says (``read`` < ``write`` < ``admin``),
  or nothing;
- an operation needs the permission ``REQUIRED`` names for it.
"""

from __future__ import annotations

from memkern.models import Permission, Role

#: The permission each cube operation needs.
REQUIRED: dict[str, Permission] = {
    # reads
    "open": Permission.READ,
    "get": Permission.READ,
    "get_all": Permission.READ,
    "search": Permission.READ,
    "history": Permission.READ,
    "operations": Permission.READ,
    "dump": Permission.READ,
    "chat": Permission.READ,
    # writes
    "add": Permission.WRITE,
    "add_document": Permission.WRITE,
    "update": Permission.WRITE,
    "invalidate": Permission.WRITE,
    "delete": Permission.WRITE,
    "archive": Permission.WRITE,
    "restore": Permission.WRITE,
    # administration of the cube
    "delete_cube": Permission.ADMIN,
    "grant": Permission.ADMIN,
    "revoke": Permission.ADMIN,
    "grants": Permission.ADMIN,
    "set_policy": Permission.ADMIN,
    "release": Permission.ADMIN,
    "get_quarantined": Permission.ADMIN,
    "restore_quarantined": Permission.ADMIN,
}


def effective_permission(role: Role, is_owner: bool, grant: Permission | None) -> Permission | None:
    """The permission a user holds on a cube."""
    if role is Role.ADMIN or is_owner:
        return Permission.ADMIN
    return grant


def decide(role: Role, is_owner: bool, grant: Permission | None, operation: str) -> bool:
    """True if a user of ``role``, owning the cube or not, holding ``grant`` on it, may run
    ``operation``. Unknown operations are denied (fail closed)."""
    needed = REQUIRED.get(operation)
    if needed is None:
        return False
    held = effective_permission(role, is_owner, grant)
    return held is not None and held.level >= needed.level
