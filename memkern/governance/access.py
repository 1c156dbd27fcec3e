"""The access policy: what a user holds on a cube, and whether that is enough.

- an admin (role) holds ``admin`` on every cube;
- a cube's owner holds ``admin`` on it;
- anyone else holds what their grant on the cube says (``read`` < ``write`` < ``admin``),
  or nothing.

What each operation needs is declared with the operation (``memkern.api.table``); the
dispatcher (``memkern.api.dispatch``) asks this module and nothing else.
"""

from __future__ import annotations

from memkern.models import CubeInfo, Permission, Role, User
from memkern.store.base import Store


def effective_permission(role: Role, is_owner: bool, grant: Permission | None) -> Permission | None:
    """The permission a user of ``role``, owning the cube or not, holding ``grant`` on it, has."""
    if role is Role.ADMIN or is_owner:
        return Permission.ADMIN
    return grant


def decide(role: Role, is_owner: bool, grant: Permission | None, needed: Permission) -> bool:
    """True if that user may run an operation that needs ``needed`` on the cube."""
    held = effective_permission(role, is_owner, grant)
    return held is not None and held.level >= needed.level


class Authorizer:
    """Answers "what does this user hold on this cube" from the store's grants."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def permission(self, user: User | None, info: CubeInfo) -> Permission | None:
        """``None`` means nothing. Without a user (the embedded default) everything is allowed."""
        if user is None:
            return Permission.ADMIN
        grant = None
        if not user.is_admin and info.owner != user.id:
            found = self._store.list_grants(cube_id=info.id, user_id=user.id)
            grant = found[0].permission if found else None
        return effective_permission(user.role, info.owner == user.id, grant)
