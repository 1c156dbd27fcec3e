"""Job types and hooks from outside memkern: modules named in ``$MEMKERN_SCHEDULER_PLUGINS``.

Each named module (comma-separated) has a ``register(registry)`` function that registers its
job types and hooks into the kernel's ``memkern.jobs.JobRegistry``. Nothing is registered
by importing a module: a worker calls ``load_plugins`` when it starts.
"""

from __future__ import annotations

import importlib
import os

from memkern.errors import InvalidInputError
from memkern.jobs import JobRegistry

PLUGINS_ENV = "MEMKERN_SCHEDULER_PLUGINS"


def load_plugins(registry: JobRegistry) -> list[str]:
    """Register the plugins ``$MEMKERN_SCHEDULER_PLUGINS`` names; returns their names."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise InvalidInputError(f"{PLUGINS_ENV} names {name!r}, which cannot be imported: {exc}") from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise InvalidInputError(f"scheduler plugin {name!r} has no register(registry) function")
        register(registry)
    return names
