"""Where activations live, and reading, verifying and removing their files.

A cube's activation is a directory beside the store (``<activation root>/<cube id>/``) holding
the manifest, the KV file and the prefix text. Files are written privately (``0o600``) and
atomically; llama.cpp is never handed a KV file whose size, sha256 and header differ from the
manifest's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from memkern.errors import InvalidInputError, LLMError
from memkern.files import atomic_file, memkern_home, sha256_file
from memkern.memory.activation.engine import read_state_header
from memkern.memory.activation.manifest import MANIFEST, ActivationManifest
from memkern.models import parse_version_id

if TYPE_CHECKING:
    from memkern.store.base import Store


def activation_root(store: Store) -> Path:
    """``<directory of the SQLite store>/activation``, else ``$MEMKERN_HOME/activation`` (or ``~/.memkern``)."""
    path = getattr(store, "path", None)
    if isinstance(path, Path) and str(path) not in ("", ":memory:"):
        return path.resolve().parent / "activation"
    return memkern_home() / "activation"


def cube_dir(store: Store, cube_id: str) -> Path:
    if not cube_id or "/" in cube_id or "\\" in cube_id or cube_id in (".", ".."):
        raise InvalidInputError(f"invalid cube id {cube_id!r}")
    return activation_root(store) / cube_id


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only."""
    with atomic_file(path) as handle:
        handle.write(data)


def read_manifest(directory: Path) -> ActivationManifest | None:
    """The directory's manifest; ``None`` without one, ``LLMError`` for an invalid one."""
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return ActivationManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise LLMError(f"the activation manifest {path} is invalid ({exc.error_count()} errors); delete the "
                       "directory or rebuild the activation") from exc


def write_manifest(directory: Path, manifest: ActivationManifest) -> None:
    """Write the manifest (atomically) and remove files it no longer names."""
    write_private(directory / MANIFEST, manifest.model_dump_json(indent=2).encode("utf-8"))
    keep = {MANIFEST, manifest.kv_file.name, manifest.prefix_file.name}
    for path in directory.iterdir():
        if path.name not in keep and not path.name.startswith("."):
            path.unlink(missing_ok=True)


def verify_files(directory: Path, manifest: ActivationManifest) -> tuple[Path, str]:
    """The KV file's path and the prefix text, after checking sizes, sha256 and the KV header.

    Raises ``LLMError`` naming the file when anything differs: llama.cpp is never handed a file whose
    digest is not the recorded one."""
    kv_path, prefix_path = directory / manifest.kv_file.name, directory / manifest.prefix_file.name
    for path, ref in ((kv_path, manifest.kv_file), (prefix_path, manifest.prefix_file)):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise LLMError(f"activation file {path} is missing; rebuild the activation") from None
        if size != ref.size or sha256_file(path) != ref.sha256:
            raise LLMError(f"activation file {path} does not match its manifest (size or sha256): it was "
                           "modified or is corrupt; refusing to restore it (rebuild the activation)")
    try:
        magic, version, _ = read_state_header(kv_path)
    except ValueError as exc:
        raise LLMError(f"activation file {kv_path} is not a llama.cpp slot file: {exc}") from exc
    if (magic, version) != (manifest.kv.state_magic, manifest.kv.state_version):
        raise LLMError(f"activation file {kv_path} has state version {version}, the manifest says "
                       f"{manifest.kv.state_version}")
    prefix = prefix_path.read_bytes().decode("utf-8")
    return kv_path, prefix


def drop_files(store: Store, cube_id: str, *, if_built_from: Iterable[str] | None = None) -> bool:
    """Remove a cube's activation directory -- only if it was built from one of the memory ids
    ``if_built_from`` when given. False if nothing was removed."""
    directory = cube_dir(store, cube_id)
    if not directory.exists():
        return False
    if if_built_from is not None:
        try:
            manifest = read_manifest(directory)
        except LLMError:
            manifest = None  # unreadable: it may hold anything, so it goes
        wanted = set(if_built_from)
        if manifest is not None and not any(parse_version_id(v)[0] in wanted for v in manifest.versions):
            return False
    for path in directory.iterdir():
        path.unlink(missing_ok=True)
    directory.rmdir()
    return True
