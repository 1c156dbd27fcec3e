"""The cube's profile: what each subject's slots hold now, and held before (``memkern.organize.profile``).

The profile is derived from the cube's active turns and follows its search index
(``Kernel.profiles``), so it cannot drift from the memories; search reads it to put current
values first, and this operation shows it whole.
"""

from __future__ import annotations

from memkern.kernel import Kernel
from memkern.models import ProfileValue
from memkern.ops.context import OpContext
from memkern.organize.profile import Profile
from memkern.retrieval.index import CubeIndex


def profile_of(kernel: Kernel, cube_id: str, index: CubeIndex) -> Profile:
    """A cube's profile, brought up to date with ``index`` (the cube's search index, as just read)."""
    return kernel.profiles.get(cube_id, index)


def profile(ctx: OpContext, subject: str | None = None) -> list[ProfileValue]:
    """Every slot value of every subject (or of ``subject``), by subject and slot, oldest value first;
    a value no longer current says until when and what replaced it. Quarantined turns state nothing."""
    known = profile_of(ctx.kernel, ctx.cube.id, ctx.kernel.indexes.get(ctx.cube.id, ctx.cube.dim))
    wanted = subject.casefold() if subject is not None else None
    return [ProfileValue(subject=value.subject, slot=value.slot, value=value.value, current=value.current,
                         since=value.since, until=value.until, superseded_by=value.superseded_by,
                         sources=list(value.sources))
            for name, slot in sorted(known.slots()) if wanted is None or name.casefold() == wanted
            for value in known.history(name, slot)]
