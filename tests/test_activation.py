"""Activation memory (memkern.memory.activation): freshness, cube files, and the real local model.

Most tests use a fake engine that writes llama.cpp-shaped slot files, so they run in milliseconds;
the last one runs the real local model (skipped unless ``memkern[local]`` is installed).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import pytest
from _local_model import needs_local_model
from conftest import ctx_of

from memkern import MemOS
from memkern.errors import CubeFileError, InvalidInputError, LLMError
from memkern.llm import local
from memkern.memory import activation
from memkern.memory.activation.block import render_prefix, select_memories
from memkern.memory.activation.engine import GGSQ_MAGIC, Generation
from memkern.memory.activation.manifest import KVRef, ModelRef
from memkern.models import MemoryKind

OTHER_SHA = "ab" * 32


class FakeEngine:
    """Tokenizes on whitespace and writes a small ``ggsq`` file; remembers what it was asked."""

    def __init__(self, gguf_sha256: str = local.MODEL_SHA256) -> None:
        self.model = ModelRef(name=local.MODEL_NAME, gguf_sha256=gguf_sha256, gguf_size=local.MODEL_SIZE)
        self.kv = KVRef(state_magic=GGSQ_MAGIC, state_version=4, n_ctx=4096)
        self.calls: list[tuple[str, Path | None]] = []

    def tokenize(self, text: str) -> list[int]:
        return [int(hashlib.sha256(w.encode()).hexdigest()[:6], 16) for w in text.split()]

    def fill_and_save(self, prefix: str, dest: Path) -> int:
        tokens = self.tokenize(prefix)
        dest.write_bytes(struct.pack(f"<III{len(tokens)}i", GGSQ_MAGIC, 4, len(tokens), *tokens)
                         + hashlib.sha256(prefix.encode()).digest() * 8)
        return len(tokens)

    def generate(self, prompt: str, *, kv_file: Path | None, max_tokens: int) -> Generation:
        self.calls.append((prompt, kv_file))
        return Generation(text="Paris", token_ids=[1, 2], prompt_tokens=len(prompt.split()),
                          cached_tokens=0, ttft_s=0.0, wall_s=0.0)


@pytest.fixture
def cube(mos):
    cube = mos.create_cube("alice", owner="Alice")
    cube.add(text="Alice lives in Paris.", kind="fact", infer=False)
    cube.add(text="Alice works as a data analyst.", kind="fact", infer=False)
    cube.add(messages=[{"role": "user", "name": "Alice", "content": "I adopted a cat called Miso.",
                        "time": "2024-03-02T09:30:00Z"}], infer=False)
    return cube


def _build(cube, engine=None, **kwargs):
    return activation.build(ctx_of(cube), engine or FakeEngine(), max_tokens=kwargs.pop("max_tokens", 2000), **kwargs)


def _ids(manifest):
    return [v.rpartition("@v")[0] for v in manifest.versions]


def test_build_records_the_block_and_is_fresh(cube):
    manifest = _build(cube)
    assert len(manifest.versions) == 3 and manifest.model.gguf_sha256 == local.MODEL_SHA256
    found = activation.status(ctx_of(cube))
    assert found.fresh and found.directory == Path(cube.session.store.path).resolve().parent / "activation" / cube.id
    kv_path, prefix = activation.verify_files(found.directory, manifest)
    assert hashlib.sha256(prefix.encode()).hexdigest() == manifest.prefix_sha256
    assert "Alice lives in Paris." in prefix and prefix.endswith("<|im_end|>\n")
    # the profile (facts) comes first, then the other memories
    assert prefix.index("Alice lives in Paris.") < prefix.index("Miso")
    engine = FakeEngine()
    result = activation.answer_with_activation(ctx_of(cube), None, "Where does Alice live?", [], max_tokens=8,
                                               required=True, engine=engine)
    assert result.answer == "Paris"
    prompt, kv_file = engine.calls[0]
    assert prompt.startswith(prefix) and kv_file == kv_path  # the block is the exact prefix


@pytest.mark.parametrize("change", ["update", "invalidate", "archive"])
def test_a_changed_memory_makes_it_stale_never_served_and_rebuilt(cube, change):
    _build(cube)
    target = next(m for m in cube.get_all() if "Paris" in m.text)
    if change == "update":
        cube.update(target.id, "Alice lives in Lyon.")
    else:
        getattr(cube, change)(target.id)
    found = activation.status(ctx_of(cube))
    assert found.state == "stale" and found.reasons[0].startswith(f"{target.id}@v1")
    engine = FakeEngine()
    assert activation.answer_with_activation(ctx_of(cube), None, "q?", [], max_tokens=8, required=False,
                                             engine=engine) is None
    with pytest.raises(InvalidInputError, match="no fresh activation"):
        activation.answer_with_activation(ctx_of(cube), None, "q?", [], max_tokens=8, required=True, engine=engine)
    assert engine.calls == []  # never served stale
    rebuilt = _build(cube)
    assert activation.status(ctx_of(cube)).fresh
    if change == "update":
        assert f"{target.id}@v2" in rebuilt.versions
        assert "Lyon" in activation.verify_files(activation.status(ctx_of(cube)).directory, rebuilt)[1]
    else:
        assert target.id not in _ids(rebuilt)


def test_a_metadata_only_change_re_points_the_activation_without_re_reading(cube):
    """The scheduler marks promoted memories ``activated`` (a new version, same text): the block
    the model would read is byte for byte the same, so its KV state is kept, not recomputed."""
    from memkern.ops import lifecycle

    class CountingEngine(FakeEngine):
        fills = 0

        def fill_and_save(self, prefix, dest):
            CountingEngine.fills += 1
            return super().fill_and_save(prefix, dest)

    first = _build(cube, CountingEngine())
    target = next(m for m in cube.get_all() if "Paris" in m.text)
    lifecycle.mark(ctx_of(cube), target.id, lifecycle.ACTIVATED, "promote job test")
    assert activation.status(ctx_of(cube)).state == "stale"  # the listed version is no longer current
    again = _build(cube, CountingEngine())
    assert CountingEngine.fills == 1 and activation.status(ctx_of(cube)).fresh
    assert again.kv_file == first.kv_file and f"{target.id}@v2" in again.versions
    cube.update(target.id, "Alice lives in Lyon.")  # the text changed: the model must read it
    _build(cube, CountingEngine())
    assert CountingEngine.fills == 2


def test_deleting_a_memory_erases_the_activation_built_from_it(cube):
    manifest = _build(cube)
    directory = activation.status(ctx_of(cube)).directory
    assert directory.is_dir()
    other = cube.add(text="Alice cycles to work.", kind="fact", infer=False).added[0]
    cube.delete(other.id)  # not in the block: the activation stays
    assert activation.status(ctx_of(cube)).fresh
    target = next(m for m in cube.get_all() if "Paris" in m.text)
    assert target.id in _ids(manifest)
    cube.delete(target.id)  # the prefix file held its text verbatim: it must go, not just go stale
    assert not directory.exists() and activation.status(ctx_of(cube)).state == "missing"


def test_deleting_a_cube_erases_its_activation(mos, cube):
    _build(cube)
    directory = activation.status(ctx_of(cube)).directory
    mos.delete_cube(cube.name)
    assert not directory.exists()


def test_chat_uses_activation_only_with_the_local_model(cube):
    class Echo:
        name = "echo"

        def complete(self, messages, **kwargs):
            from memkern.llm.base import LLMResponse

            return LLMResponse(text="plain", model="echo")

    _build(cube)
    cube.session.llm = Echo()
    try:
        assert cube.chat("Where does Alice live?").answer == "plain"  # auto: not the local model
        with pytest.raises(InvalidInputError, match="needs the local model"):
            cube.chat("Where does Alice live?", use_activation=True)
    finally:
        cube.session.llm = None


def test_a_tampered_kv_file_on_disk_is_never_restored(cube):
    manifest = _build(cube)
    directory = activation.status(ctx_of(cube)).directory
    kv = directory / manifest.kv_file.name
    data = bytearray(kv.read_bytes())
    data[-1] ^= 0xFF
    kv.write_bytes(bytes(data))
    engine = FakeEngine()
    with pytest.raises(LLMError, match="does not match its manifest"):
        activation.answer_with_activation(ctx_of(cube), None, "q?", [], max_tokens=8, required=True, engine=engine)
    # automatic use falls back to a plain answer instead
    assert activation.answer_with_activation(ctx_of(cube), None, "q?", [], max_tokens=8, required=False,
                                             engine=engine) is None
    assert engine.calls == []


# -- cube files ------------------------------------------------------------------------------------
def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _write(path: Path, members: dict[str, bytes], fix_checksums: bool = True) -> Path:
    manifest = json.loads(members["manifest.json"])
    if fix_checksums:
        for name in manifest["files"]:
            manifest["files"][name] = {"size": len(members[name]), "sha256": hashlib.sha256(members[name]).hexdigest()}
    members = {**members, "manifest.json": json.dumps(manifest).encode()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def dumped(cube, tmp_path):
    _build(cube)
    return Path(cube.dump(tmp_path / "alice.mkcube").path)


def test_dump_and_load_carry_a_fresh_activation(dumped, tmp_path, embedder):
    members = _members(dumped)
    manifest = json.loads(members["manifest.json"])
    [entry] = manifest["memory"]["activation"]
    assert {entry["kv"], entry["manifest"], entry["prefix"]} <= set(manifest["files"])
    with MemOS(tmp_path / "other" / "m.db", embedder=embedder, llm=None) as other:
        loaded = other.load_cube(dumped, name="copy")
        found = activation.status(ctx_of(loaded))
        assert found.fresh and found.manifest.cube_id == loaded.id
        activation.verify_files(found.directory, found.manifest)


def test_a_stale_activation_is_not_dumped(cube, tmp_path):
    _build(cube)
    cube.update(cube.get_all()[0].id, "Alice lives in Lyon.")
    members = _members(Path(cube.dump(tmp_path / "stale.mkcube").path))
    assert json.loads(members["manifest.json"])["memory"]["activation"] == []
    assert not any(name.startswith("activation/") for name in members)


def test_a_tampered_kv_in_a_cube_file_is_refused(dumped, tmp_path, embedder):
    members = _members(dumped)
    kv = bytearray(members["activation/0/kv.bin"])
    kv[-1] ^= 0xFF
    bad = {**members, "activation/0/kv.bin": bytes(kv)}
    with MemOS(tmp_path / "o1.db", embedder=embedder, llm=None) as other:
        # checksum table not updated: caught by it
        with pytest.raises(CubeFileError, match="activation/0/kv.bin.*sha256.*modified or is corrupt"):
            other.load_cube(_write(tmp_path / "t1.mkcube", bad, fix_checksums=False))
        # checksum table recomputed by the tamperer: caught by the activation manifest
        with pytest.raises(CubeFileError, match="tampered with or is corrupt"):
            other.load_cube(_write(tmp_path / "t2.mkcube", bad))
        assert other.list_cubes() == []


def test_a_kv_cache_from_another_model_is_refused(cube, tmp_path, embedder):
    activation.build(ctx_of(cube), FakeEngine(gguf_sha256=OTHER_SHA), max_tokens=2000)
    path = Path(cube.dump(tmp_path / "other-model.mkcube").path)
    with MemOS(tmp_path / "o2.db", embedder=embedder, llm=None) as other:
        with pytest.raises(CubeFileError, match="built for another model"):
            other.load_cube(path)
        assert other.list_cubes() == []


def test_the_block_fits_the_token_budget_and_prefers_hot_memories(cube):
    for n in range(30):
        cube.add(text=f"Note number {n} about the garden and its many plants.", kind="summary", infer=False)
    engine = FakeEngine()
    small = activation.build(ctx_of(cube), engine, max_tokens=len(engine.tokenize(render_prefix("Alice", []))) + 40)
    assert 0 < len(small.versions) < 33 and small.n_tokens <= 40 + len(engine.tokenize(
        render_prefix("Alice", [])))
    hot = next(m for m in cube.get_all() if m.kind is MemoryKind.TURN)
    chosen = select_memories(cube.get_all(), prefer=[hot.id])
    assert chosen[0].id == hot.id


# -- the real local model --------------------------------------------------------------------------
@needs_local_model
def test_restored_kv_gives_the_same_greedy_tokens_as_reading_from_scratch(tmp_path_factory, embedder):
    models = tmp_path_factory.mktemp("models")
    llm = local.LocalLLM(models_dir=models)
    engine = activation.LocalKVEngine(llm)
    with MemOS(tmp_path_factory.mktemp("act") / "m.db", embedder=embedder, llm=llm) as mos:
        cube = mos.create_cube("alice", owner="Alice")
        cube.add(text="Alice lives in Paris, near the Canal Saint-Martin.", kind="fact", infer=False)
        cube.add(text="Alice works as a data analyst at a bank.", kind="fact", infer=False)
        manifest = activation.build(ctx_of(cube), engine, max_tokens=400)
        assert manifest.kv.state_version > 0 and manifest.n_tokens <= 400
        found = activation.status(ctx_of(cube))
        kv_path, prefix = activation.verify_files(found.directory, manifest)
        prompt = prefix + activation.question_suffix("Where does Alice live?", [], len(manifest.versions) + 1)
        scratch = engine.generate(prompt, kv_file=None, max_tokens=12)
        restored = engine.generate(prompt, kv_file=kv_path, max_tokens=12)
        assert scratch.cached_tokens == 0 and restored.cached_tokens == manifest.n_tokens
        assert restored.token_ids == scratch.token_ids and "Paris" in restored.text
        # through chat: used automatically with the local model while fresh, never once stale
        answer = cube.chat("Where does Alice live?", use_activation=True, top_k=2)
        assert "Paris" in answer.answer
        cube.update(cube.get_all()[0].id, "Alice lives in Lyon.")
        with pytest.raises(InvalidInputError, match="no fresh activation"):
            cube.chat("Where does Alice live?", use_activation=True)


def test_cli_status_drop_and_build_without_the_local_model(cube, monkeypatch):
    from typer.testing import CliRunner

    from memkern.cli.main import app

    monkeypatch.delenv("MEMKERN_LLM", raising=False)
    db = str(cube.session.store.path)
    _build(cube)
    runner = CliRunner()
    shown = runner.invoke(app, ["--db", db, "--json", "activation", "status", cube.name])
    assert shown.exit_code == 0 and json.loads(shown.output)["state"] == "fresh"
    built = runner.invoke(app, ["--db", db, "activation", "build", cube.name])
    assert built.exit_code != 0 and "needs the local model (MEMKERN_LLM=local" in built.output
    cube.session.create_user("Ops", "admin", user_id="ops")
    dropped = runner.invoke(app, ["--db", db, "--user", "ops", "activation", "drop", cube.name])
    assert dropped.exit_code == 0 and "removed the activation" in dropped.output
    assert activation.status(ctx_of(cube)).state == "missing"
    # Acting as a user, the drop is audited like every operation (newest first).
    assert cube.session.audit(cube=cube.name)[0].operation == "activation_drop"
