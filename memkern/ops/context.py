"""What an operation runs with: the kernel, who is calling, and the cube it addresses."""

from __future__ import annotations

from dataclasses import dataclass

from memkern.errors import InvalidInputError
from memkern.kernel import Kernel
from memkern.models import CubeInfo, Permission, User


@dataclass(frozen=True)
class OpContext:
    """Built by the dispatcher after the caller was authorized; operations never check
    permissions themselves, they only ask ``may`` where what they *show* depends on it
    (quarantined memories are visible to cube admins only)."""

    kernel: Kernel
    #: The authenticated user; ``None`` for the embedded single-user default (nothing checked).
    user: User | None = None
    #: The cube the operation addresses (``None`` for operations on the store).
    cube_info: CubeInfo | None = None
    #: What the caller holds on that cube.
    permission: Permission | None = None

    @property
    def cube(self) -> CubeInfo:
        if self.cube_info is None:
            raise InvalidInputError("this operation needs a cube")
        return self.cube_info

    def may(self, needed: Permission) -> bool:
        return self.permission is not None and self.permission.level >= needed.level

    def actor(self, given: str | None) -> str | None:
        """Who the operation log names: the authenticated user, else the label the caller gave."""
        return self.user.id if self.user is not None else given

    def on(self, info: CubeInfo) -> OpContext:
        """The same caller on another cube (compose, fuse: the dispatcher checked every cube named)."""
        return OpContext(self.kernel, self.user, info, self.kernel.authorizer.permission(self.user, info))
