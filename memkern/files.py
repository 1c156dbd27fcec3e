"""Where memkern keeps its files, and how it checks them.

Everything memkern writes outside a store the user named lives under one directory,
``$MEMKERN_HOME`` or ``~/.memkern``: the default SQLite store, the assembled local model,
and the activation and parametric files of stores that are not a local file. Every file it
writes whole is written through ``atomic_file``: a crash leaves the old file or the new one,
never half of one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_CHUNK = 8 << 20


def memkern_home() -> Path:
    """``$MEMKERN_HOME``, or ``~/.memkern``."""
    home = os.environ.get("MEMKERN_HOME")
    return Path(home) if home else Path.home() / ".memkern"


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks (model parts and KV states are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_file(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` in one step when the block ends: written to a
    temporary file beside it (private, 0600, unless ``mode`` says otherwise), fsynced, renamed
    over ``path``. On any error the temporary file is removed and ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
