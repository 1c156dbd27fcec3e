"""Store back ends, and ``open_store``: pick one by URL.

=======================================================  =========================================
``open_store(...)``                                       store
=======================================================  =========================================
``"/path/memkern.db"``, ``Path(...)``, ``"~/m.db"``       ``SQLiteStore`` on that file
``"sqlite:///relative.db"``, ``"sqlite:////abs/m.db"``    ``SQLiteStore`` (SQLAlchemy-style URL)
``"postgresql://user@host:5432/db"``                      ``PostgresStore`` in schema ``memkern``
``"postgresql://user@host/db?schema=app1&sslmode=..."``  ``PostgresStore`` in schema ``app1``
=======================================================  =========================================

``postgres://`` is accepted as a synonym of ``postgresql://``. The ``schema`` query
parameter is memkern's own and is removed before the URL reaches libpq; every other
parameter (``sslmode``, ``connect_timeout``, ``application_name``...) is passed on.
The back end modules are imported only when chosen, so SQLite never needs psycopg.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from memkern.errors import InvalidInputError

if TYPE_CHECKING:
    from memkern.store.base import Store

__all__ = ["STORE_ENV", "open_store", "parse_store_url"]

#: Environment variable naming the store ``MemOS()`` and the CLI use by default.
STORE_ENV = "MEMKERN_STORE"

_POSTGRES_SCHEMES = ("postgresql", "postgres")


def parse_store_url(url_or_path: str | os.PathLike[str]) -> tuple[str, dict[str, str]]:
    """``("sqlite", {"path": ...})`` or ``("postgres", {"dsn": ..., "schema": ...})``, without opening anything."""
    if isinstance(url_or_path, os.PathLike):
        return "sqlite", {"path": str(Path(url_or_path).expanduser())}
    if not isinstance(url_or_path, str) or not url_or_path.strip():
        raise InvalidInputError(f"a store is a SQLite path or a postgresql:// URL, not {url_or_path!r}")
    text = url_or_path.strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or (len(scheme) == 1 and scheme.isalpha()):  # a plain path (or a Windows drive letter)
        return "sqlite", {"path": str(Path(text).expanduser())}
    if scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
        if not rest.startswith("/") or rest == "/":
            raise InvalidInputError(f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, not {text!r}")
        path = rest[1:].split("?", 1)[0]
        return "sqlite", {"path": str(Path(path).expanduser())}
    if scheme in _POSTGRES_SCHEMES:
        parts = urlsplit(text)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "schema"]
        if len(schemas) > 1 or (schemas and not schemas[0]):
            raise InvalidInputError("give ?schema= at most once, with a name")
        kept = urlencode([(key, value) for key, value in query if key != "schema"])
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, kept, parts.fragment))
        return "postgres", {"dsn": dsn, "schema": schemas[0] if schemas else "memkern"}
    raise InvalidInputError(f"unknown store URL scheme {scheme + '://'!r}: use a SQLite path, sqlite:///PATH "
                            "or postgresql://USER@HOST:PORT/DB[?schema=NAME]")


def open_store(url_or_path: str | os.PathLike[str]) -> Store:
    """Open (creating or upgrading if needed) the store a path or URL names; see the module docstring."""
    kind, args = parse_store_url(url_or_path)
    if kind == "sqlite":
        from memkern.store.sqlite import SQLiteStore

        return SQLiteStore(args["path"])
    from memkern.store.postgres import PostgresStore

    return PostgresStore(args["dsn"], schema=args["schema"])
