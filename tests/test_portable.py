"""The portable MemCube file: dump, load, and every way a bad file is refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _hash_embedder import HashEmbedder, main_embedder  # noqa: E402

from memkern import (  # noqa: E402
    ConflictError,
    CubeFileError,
    InvalidInputError,
    MemOS,
    NotFoundError,
    cubefile,
    kernel,
)
from memkern.ops import portable  # noqa: E402
from memkern.store.sqlite import sqlite3

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
QUERIES = [
    "Where does Alice work?",
    "What is the name of the cat?",
    "hiking trip in the mountains",
    "Bob birthday party",
    "train to Porto",
]


# -- fixtures and helpers --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emb():
    return main_embedder()


@pytest.fixture
def pmos(tmp_path, emb):
    mos = MemOS(tmp_path / "store.db", embedder=emb)
    yield mos
    mos.close()


def build_cube(mos: MemOS, name: str = "alice-mem"):
    """A cube with turns in two sessions, a fact updated twice, a document, an archived and a deleted memory."""
    cube = mos.create_cube(name, owner="alice", description="Alice's memories")
    s1 = cube.add([
        {"role": "user", "name": "Alice", "content": "I adopted a cat named Miso last week.", "time": T0, "id": "a1"},
        {"role": "assistant", "content": "Congratulations on Miso! How is she settling in?",
         "time": T0 + timedelta(minutes=1), "id": "a2"},
        {"role": "user", "name": "Alice", "content": "Great, she sleeps on my keyboard all day.",
         "time": T0 + timedelta(minutes=2), "id": "a3"},
    ], session_id="s1")
    s2 = cube.add([
        {"role": "user", "name": "Alice", "content": "Bob's birthday party is on Saturday at the lake house.",
         "time": T0 + timedelta(days=3), "id": "b1"},
        {"role": "user", "name": "Bob", "content": "I'm taking the train to Porto next month for a hiking trip.",
         "time": T0 + timedelta(days=3, minutes=5), "id": "b2"},
        {"role": "user", "name": "Alice", "content": "Remember to buy sunscreen before the trip.",
         "time": T0 + timedelta(days=3, minutes=6), "id": "b3"},
    ], session_id="s2")
    fact = cube.add(text="Alice works as a nurse in Lisbon.", kind="fact", tags=["job"],
                    metadata={"source": "intro call"}, time=T0).added[0]
    cube.update(fact.id, "Alice works as a doctor at the Porto hospital.", reason="new job", actor="alice",
                valid_from=T0 + timedelta(days=30))
    cube.update(fact.id, tags=["job", "career"], reason="retag")
    cube.add_document(
        "Hiking checklist.\n\nWater, boots, a map of the mountains and a rain jacket.\n\n"
        "The trail to the summit takes five hours; start before sunrise.",
        path="notes/hiking.txt", time=T0 + timedelta(days=4), tags=["doc"])
    cube.archive(s1.added[2].id, reason="old")
    cube.delete(s2.added[2].id, reason="privacy")
    return cube, fact.id, s2.added[2].id


def all_versions(cube) -> dict[str, list[dict]]:
    """Every version of every memory (any state), without the cube id, keyed by memory id."""
    return {
        item.id: [v.model_dump(exclude={"cube_id"}) for v in cube.history(item.id)]
        for item in cube.get_all({"state": None})
    }


def search_results(cube) -> list[list[tuple[str, float]]]:
    return [[(hit.id, hit.score) for hit in cube.search(q, top_k=5)] for q in QUERIES]


def assert_same_search(a, b) -> None:
    ra, rb = search_results(a), search_results(b)
    for qa, qb in zip(ra, rb):
        assert [i for i, _ in qa] == [i for i, _ in qb]
        assert [s for _, s in qa] == pytest.approx([s for _, s in qb], rel=1e-6, abs=1e-9)
    assert any(ra), "the searches found nothing: the comparison proves nothing"


def store_state(mos: MemOS, db: Path):
    """What must not change when a load is refused: the cubes and every row of the store."""
    with sqlite3.connect(db) as con:
        counts = tuple(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                       for t in ("cubes", "memories", "index_rows", "operations"))
    return [c.model_dump() for c in mos.list_cubes()], counts


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def reseal(members: dict[str, bytes], **manifest_changes) -> dict[str, bytes]:
    """Recompute the manifest's checksum table (and apply changes), as a careful forger would."""
    manifest = json.loads(members["manifest.json"])
    manifest.update(manifest_changes)
    manifest["files"] = {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in members.items() if name != "manifest.json"
    }
    return {**members, "manifest.json": json.dumps(manifest).encode()}


def jsonl(members: dict[str, bytes]) -> list[dict]:
    return [json.loads(line) for line in members["memories.jsonl"].decode().splitlines()]


def with_lines(members: dict[str, bytes], lines: list[dict]) -> dict[str, bytes]:
    return {**members, "memories.jsonl": "".join(json.dumps(x) + "\n" for x in lines).encode()}


def with_vectors(members: dict[str, bytes], vectors: np.ndarray) -> dict[str, bytes]:
    return {**members, "vectors.safetensors": save_tensors({"vectors": vectors})}


@pytest.fixture
def dumped(pmos, tmp_path):
    cube, fact_id, deleted_id = build_cube(pmos)
    path = Path(cube.dump(tmp_path / "alice.mkcube").path)
    return cube, path, fact_id, deleted_id


def assert_refused(mos: MemOS, tmp_path: Path, path: Path, match: str, **kwargs) -> CubeFileError:
    before = store_state(mos, tmp_path / "store.db")
    with pytest.raises(CubeFileError, match=match) as info:
        mos.load_cube(path, name="copy", **kwargs)
    assert store_state(mos, tmp_path / "store.db") == before
    with pytest.raises(NotFoundError):
        mos.get_cube("copy")
    return info.value


# -- the file written ------------------------------------------------------------------------------
def test_dump_writes_one_verifiable_zip(dumped, tmp_path):
    cube, path, fact_id, deleted_id = dumped
    assert path == tmp_path / "alice.mkcube"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["manifest.json", "memories.jsonl", "vectors.safetensors"]
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == "memkern-cube" and manifest["format_version"] == 1
    assert manifest["memkern_version"]
    datetime.fromisoformat(manifest["created_at"])
    assert manifest["cube"]["id"] == cube.id and manifest["cube"]["name"] == "alice-mem"
    assert manifest["embedder"] == {"name": cube.info.embedder, "dim": cube.info.dim}
    assert manifest["memory"]["activation"] == [] and manifest["memory"]["parametric"] == []
    assert manifest["memory"]["plaintext"]["versions"] == "memories.jsonl"
    assert manifest["memory"]["plaintext"]["vectors"] == "vectors.safetensors"
    for name in ("memories.jsonl", "vectors.safetensors"):
        assert manifest["files"][name] == {"size": len(members[name]),
                                           "sha256": hashlib.sha256(members[name]).hexdigest()}

    lines = jsonl(members)
    ids = [x["id"] for x in lines]
    assert deleted_id not in ids                       # deleted: gone, all versions
    assert [x["version"] for x in lines if x["id"] == fact_id] == [1, 2, 3]
    current = [x for x in lines if x["expired_at"] is None]
    assert len(current) == len(cube.get_all({"state": None}))
    assert any(x["state"] == "archived" for x in current)
    vectors = load_tensors(members["vectors.safetensors"])["vectors"]
    assert vectors.dtype == np.float32 and vectors.shape == (len(current), cube.info.dim)
    assert manifest["counts"] == {"memories": len(set(ids)), "versions": len(lines), "current": len(current),
                                  "vectors": len(current)}
    # The vectors are the store's, in the order of the current versions.
    _, stored = cube.session.store.export_versions(cube.id)
    assert np.array_equal(vectors, stored)


def test_dump_overwrites_atomically_and_keeps_mode(dumped, tmp_path):
    cube, path, *_ = dumped
    os.chmod(path, 0o640)
    cube.add(text="One more fact about Alice.")
    cube.dump(path)
    assert (path.stat().st_mode & 0o777) == 0o640
    assert json.loads(read_members(path)["manifest.json"])["counts"]["current"] == len(cube.get_all({"state": None}))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(InvalidInputError, match="directory"):
        cube.dump(tmp_path)


# -- round trips -----------------------------------------------------------------------------------
def test_round_trip_under_another_name(dumped, pmos):
    cube, path, fact_id, deleted_id = dumped
    copy = pmos.load_cube(path, name="alice-copy")
    assert copy.id != cube.id and len(copy.id) == 32
    assert copy.name == "alice-copy" and copy.info.owner == "alice"
    assert copy.info.description == cube.info.description
    assert copy.info.embedder == cube.info.embedder and copy.info.dim == cube.info.dim
    assert copy.info.metadata["loaded_from"]["cube_id"] == cube.id
    assert copy.info.metadata["loaded_from"]["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pmos.get_cube("alice-copy").info == copy.info  # persisted as returned

    # Same memories, versions, provenance, times; only the cube id differs.
    assert all_versions(copy) == all_versions(cube)
    assert all(v.cube_id == copy.id for m in copy.get_all({"state": None}) for v in copy.history(m.id))
    fact_history = copy.history(fact_id)
    assert [v.version for v in fact_history] == [1, 2, 3]
    assert fact_history[0].expired_at is not None and fact_history[0].valid_to == T0 + timedelta(days=30)
    assert fact_history[1].change_reason == "new job" and fact_history[1].changed_by == "alice"
    with pytest.raises(NotFoundError):
        copy.history(deleted_id)
    assert [m.id for m in copy.get_all()] == [m.id for m in cube.get_all()]           # order and archive state
    assert [m.id for m in copy.get_all({"state": "archived"})] == [m.id for m in cube.get_all({"state": "archived"})]
    assert_same_search(cube, copy)
    # Writes keep working on the copy (positions continue, versions continue).
    copy.update(fact_id, "Alice is head of the Porto hospital.")
    assert copy.history(fact_id)[-1].version == 4
    assert cube.history(fact_id)[-1].version == 3
    ops = [op.op for op in copy.operations()]
    assert "import" in ops


def test_load_into_a_fresh_store(dumped, tmp_path, emb):
    cube, path, *_ = dumped
    with MemOS(tmp_path / "other.db", embedder=emb) as other:
        loaded = other.load_cube(path)
        assert loaded.name == "alice-mem" and loaded.info.owner == "alice" and loaded.id != cube.id
        assert all_versions(loaded) == all_versions(cube)
        assert_same_search(cube, loaded)
        # And back out again: the loaded cube dumps and loads like any other.
        again = Path(loaded.dump(tmp_path / "again.mkcube").path)
        third = other.load_cube(again, name="third")
        assert third.info.metadata["loaded_from"]["cube_id"] == loaded.id
        assert all_versions(third) == all_versions(cube)


def test_load_with_a_new_owner_rewrites_every_version(dumped, pmos):
    cube, path, fact_id, _ = dumped
    copy = pmos.load_cube(path, name="bobs", owner="bob")
    assert copy.info.owner == "bob"
    assert {v.owner for m in copy.get_all({"state": None}) for v in copy.history(m.id)} == {"bob"}
    assert [c.name for c in pmos.list_cubes(owner="bob")] == ["bobs"]


def test_name_taken_is_a_conflict_and_writes_nothing(dumped, pmos, tmp_path):
    _, path, *_ = dumped
    before = store_state(pmos, tmp_path / "store.db")
    with pytest.raises(ConflictError, match="alice-mem"):
        pmos.load_cube(path)
    assert store_state(pmos, tmp_path / "store.db") == before
    with pytest.raises(InvalidInputError):
        pmos.load_cube(path, name="  ")


def test_empty_cube_round_trip(pmos, tmp_path):
    cube = pmos.create_cube("empty")
    path = Path(cube.dump(tmp_path / "empty.mkcube").path)
    copy = pmos.load_cube(path, name="empty2")
    assert copy.get_all({"state": None}).items == []
    assert copy.search("anything at all") == []


def test_load_with_another_embedder_reembeds(dumped, tmp_path, monkeypatch):
    cube, path, fact_id, _ = dumped
    other_emb = HashEmbedder(dim=32, name="other-hash-32")
    assert other_emb.name != cube.info.embedder
    monkeypatch.setattr(kernel, "EMBED_BATCH", 3)
    with MemOS(tmp_path / "other.db", embedder=other_emb) as other:
        loaded = other.load_cube(path)
        assert loaded.info.embedder == "other-hash-32" and loaded.info.dim == 32
        assert loaded.info.metadata["loaded_from"]["embedder"] == cube.info.embedder
        versions, vectors = other.store.export_versions(loaded.id)
        texts = [v.text for v in versions if v.expired_at is None]
        assert vectors.shape == (len(texts), 32)
        assert np.allclose(vectors, HashEmbedder(dim=32).embed(texts))
        assert max(other_emb.calls) <= 3 and sum(other_emb.calls) == len(texts)
        assert all_versions(loaded) == all_versions(cube)
        hits = loaded.search("doctor at the Porto hospital", top_k=3)
        assert fact_id in [hit.id for hit in hits]
        # The cube now opens with this embedder, as a cube built by it.
        assert other.get_cube(loaded.id).info.embedder == "other-hash-32"


# -- refusals: tampering ---------------------------------------------------------------------------
def test_flipped_byte_in_memories_is_refused(dumped, pmos, tmp_path):
    _, path, *_ = dumped
    members = read_members(path)
    data = bytearray(members["memories.jsonl"])
    at = data.index(b"Miso")
    data[at] = ord("N")  # same size, different content
    bad = write_zip(tmp_path / "bad.mkcube", {**members, "memories.jsonl": bytes(data)})
    err = assert_refused(pmos, tmp_path, bad, r"memories\.jsonl.*sha256")
    expected = json.loads(members["manifest.json"])["files"]["memories.jsonl"]["sha256"]
    assert expected in str(err) and hashlib.sha256(bytes(data)).hexdigest() in str(err)


def test_changed_size_and_vectors_edit_are_refused(dumped, pmos, tmp_path):
    _, path, *_ = dumped
    members = read_members(path)
    longer = write_zip(tmp_path / "a.mkcube", {**members, "memories.jsonl": members["memories.jsonl"] + b" "})
    assert_refused(pmos, tmp_path, longer, r"memories\.jsonl.* bytes but manifest\.json says")
    vectors = load_tensors(members["vectors.safetensors"])["vectors"].copy()
    vectors[0, 0] += 0.5
    edited = write_zip(tmp_path / "b.mkcube", with_vectors(members, vectors))
    assert_refused(pmos, tmp_path, edited, r"vectors\.safetensors")


def test_resealed_but_inconsistent_versions_are_refused(dumped, pmos, tmp_path):
    cube, path, fact_id, _ = dumped
    members = read_members(path)
    lines = jsonl(members)
    vectors = load_tensors(members["vectors.safetensors"])["vectors"]
    n_current = vectors.shape[0]

    def refused(name, new_members, match):
        bad = write_zip(tmp_path / f"{name}.mkcube", reseal(new_members))
        return assert_refused(pmos, tmp_path, bad, match)

    # Duplicate (id, version).
    refused("dup", with_lines(members, lines + [lines[0]]),
            rf"line {len(lines) + 1}: duplicate version .*first at line 1")
    # Two current versions of one memory.
    fact_lines = [x for x in lines if x["id"] == fact_id]
    two_current = [dict(x, expired_at=None) if x is fact_lines[0] else x for x in lines]
    refused("two", with_lines(members, two_current), rf"{fact_id}.*more than one current version")
    # A current version without a vector.
    extra = dict(lines[0], id="f" * 32, text="A memory that has no vector at all.", metadata={})
    extra["provenance"] = dict(extra["provenance"], message_ids=["zzz"])
    refused("novec", with_lines(members, lines + [extra]), r"manifest\.json counts \d+ memories but the file holds \d+")
    # No current version left.
    refused("nocur", with_lines(members, [x for x in lines if not (x["id"] == fact_id and x["expired_at"] is None)]),
            rf"{fact_id}.*no current version")
    # The current version is not the newest.
    older_current = [dict(x, version=9, expired_at="2024-01-01T00:00:00Z") if x is fact_lines[0] else x
                     for x in lines]
    refused("old", with_lines(members, older_current), r"current version of .* but v9 exists")
    # A line that is not a MemoryItem (reports its line number).
    broken = lines[:3] + [dict(lines[3], version="three")] + lines[4:]
    refused("invalid", with_lines(members, broken), r"memories\.jsonl line 4 is not a valid memory.*version")
    not_json = {**members, "memories.jsonl": members["memories.jsonl"] + b"{not json\n"}
    refused("notjson", not_json, rf"line {len(lines) + 1} is not a valid memory")
    # A memory of another cube.
    refused("cube", with_lines(members, [dict(lines[0], cube_id="x" * 32)] + lines[1:]), r"line 1: .*belongs to cube")
    # Vector count and dimension.
    refused("fewer", with_vectors(members, vectors[:-1]), rf"has {n_current - 1} vectors but .* {n_current} current")
    wide = np.concatenate([vectors, np.zeros((n_current, 1), np.float32)], axis=1)
    refused("wide", with_vectors(members, wide), rf"{vectors.shape[1] + 1} dimensions but manifest\.json says")
    nan = vectors.copy()
    nan[2, 1] = np.nan
    refused("nan", with_vectors(members, nan), r"vector 2 holds NaN or infinite")
    inf = vectors.copy()
    inf[0, 0] = np.inf
    refused("inf", with_vectors(members, inf), r"vector 0 holds NaN or infinite")
    refused("f64", with_vectors(members, vectors.astype(np.float64)), r"dtype float64, expected float32")
    refused("tensors", {**members, "vectors.safetensors": save_tensors({"vectors": vectors, "x": vectors})},
            r"holds tensors")
    refused("garbage", {**members, "vectors.safetensors": b"\x80\x03pickle-ish bytes"},
            r"vectors\.safetensors is not a valid safetensors file")
    # Counts in the manifest that do not match.
    manifest = json.loads(members["manifest.json"])
    bad_counts = dict(manifest["counts"], versions=manifest["counts"]["versions"] + 1)
    bad = write_zip(tmp_path / "counts.mkcube", reseal(members, counts=bad_counts))
    assert_refused(pmos, tmp_path, bad, r"counts \d+ versions but the file holds")
    # A dimension in the manifest that disagrees with the cube's.
    bad = write_zip(tmp_path / "dim.mkcube", reseal(members, embedder=dict(manifest["embedder"], dim=7)))
    assert_refused(pmos, tmp_path, bad, r"embedder entry says")


def test_manifest_problems_are_refused(dumped, pmos, tmp_path):
    _, path, *_ = dumped
    members = read_members(path)
    manifest = json.loads(members["manifest.json"])

    def refused(name, manifest_bytes, match):
        bad = write_zip(tmp_path / f"{name}.mkcube", {**members, "manifest.json": manifest_bytes})
        return assert_refused(pmos, tmp_path, bad, match)

    refused("notjson", b"{this is not json", r"not a memkern cube file: manifest\.json is not valid JSON")
    refused("list", b"[]", r"not a memkern cube file: manifest\.json is a JSON list")
    refused("format", json.dumps(dict(manifest, format="other-thing")).encode(),
            r"not a memkern cube file.*'other-thing'")
    refused("v2", json.dumps(dict(manifest, format_version=2)).encode(),
            r"unsupported cube file format version 2.*reads version 1.*upgrade")
    refused("v0", json.dumps(dict(manifest, format_version=0)).encode(), r"unsupported cube file format version 0")
    no_cube = {k: v for k, v in manifest.items() if k != "cube"}
    refused("nocube", json.dumps(no_cube).encode(), r"manifest\.json is invalid: cube")
    bad_sha = dict(manifest, files=dict(manifest["files"], **{"memories.jsonl": {"size": 1, "sha256": "zz"}}))
    refused("sha", json.dumps(bad_sha).encode(), r"manifest\.json is invalid: files\.memories\.jsonl\.sha256")
    future = dict(manifest, memory=dict(manifest["memory"], activation=[{"kind": "kv", "files": ["kv.bin"]}]))
    refused("activation", json.dumps(future).encode(), r"activation memories, which this memkern cannot load")


def test_member_set_problems_are_refused(dumped, pmos, tmp_path):
    _, path, *_ = dumped
    members = read_members(path)
    extra = write_zip(tmp_path / "extra.mkcube", {**members, "notes.txt": b"hello"})
    assert_refused(pmos, tmp_path, extra, r"unexpected member 'notes\.txt'.*not listed in manifest\.json")
    missing = write_zip(tmp_path / "missing.mkcube",
                        {k: v for k, v in members.items() if k != "vectors.safetensors"})
    assert_refused(pmos, tmp_path, missing, r"member 'vectors\.safetensors' is listed in manifest\.json but missing")
    # Listed in the table, present, but used by no memory section.
    sealed = write_zip(tmp_path / "unused.mkcube", reseal({**members, "notes.txt": b"hello"}))
    assert_refused(pmos, tmp_path, sealed, r"lists 'notes\.txt' but no memory section uses it")
    # Unsafe names, even when sealed into the manifest.
    for i, evil in enumerate(("../evil.txt", "/etc/evil", "a/../../evil", "dir/")):
        bad = tmp_path / f"evil{i}.mkcube"
        write_zip(bad, {**members, evil: b"x"})
        assert_refused(pmos, tmp_path, bad, r"refusing member .*relative file path")
    # The same member twice.
    dup = tmp_path / "dup.mkcube"
    with zipfile.ZipFile(dup, "w") as zf, pytest.warns(UserWarning):
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("memories.jsonl", members["memories.jsonl"])
    assert_refused(pmos, tmp_path, dup, r"'memories\.jsonl' appears twice")


def test_truncated_and_padded_files_are_refused(dumped, pmos, tmp_path):
    _, path, *_ = dumped
    raw = path.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 1, 10):
        truncated = tmp_path / f"cut{cut}.mkcube"
        truncated.write_bytes(raw[:cut])
        assert_refused(pmos, tmp_path, truncated, r"truncated or corrupt")
    padded = tmp_path / "padded.mkcube"
    padded.write_bytes(raw + b"\x00" * 100)
    assert_refused(pmos, tmp_path, padded, r"corrupt|not a memkern")
    # Damage inside a compressed member: the zip CRC (or the checksum) catches it.
    damaged = bytearray(raw)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("memories.jsonl")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    damaged[start + info.compress_size // 2] ^= 0xFF
    (tmp_path / "damaged.mkcube").write_bytes(bytes(damaged))
    assert_refused(pmos, tmp_path, tmp_path / "damaged.mkcube", r"memories\.jsonl.*(corrupt|sha256)")


def test_foreign_files_are_not_cube_files(pmos, tmp_path):
    cases = {
        "random.zip": None,
        "notes.txt": b"just some text\nnothing to see\n",
        "data.json": json.dumps({"format": "something", "memories": []}).encode(),
        "image.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "empty.mkcube": b"",
    }
    random_zip = io.BytesIO()
    with zipfile.ZipFile(random_zip, "w") as zf:
        zf.writestr("hello.txt", "hello")
        zf.writestr("src/main.py", "print(1)")
    cases["random.zip"] = random_zip.getvalue()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert_refused(pmos, tmp_path, tmp_path / name, r"not a memkern cube file")
    assert_refused(pmos, tmp_path, tmp_path / "does-not-exist.mkcube", r"no cube file at")
    assert_refused(pmos, tmp_path, tmp_path, r"is a directory")


def test_zip_bombs_are_refused(dumped, pmos, tmp_path, monkeypatch):
    _, path, *_ = dumped
    members = read_members(path)
    monkeypatch.setattr(cubefile, "MAX_UNCOMPRESSED_BYTES", 4 * 1024 * 1024)
    bomb = tmp_path / "bomb.mkcube"
    write_zip(bomb, reseal({**members, "memories.jsonl": members["memories.jsonl"] + b" " * (8 * 1024 * 1024)}))
    assert bomb.stat().st_size < 1024 * 1024  # small on disk, large inside
    assert_refused(pmos, tmp_path, bomb, r"declares more than 4,194,304 bytes .*'memories\.jsonl'")
    monkeypatch.setattr(cubefile, "MAX_MANIFEST_BYTES", 100)
    assert_refused(pmos, tmp_path, path, r"manifest\.json is \d[\d,]* bytes; the limit is 100")


def shrink_declared_size(path: Path, member: str, size: int) -> None:
    """Make the zip headers (local and central) declare ``size`` bytes for ``member``, data unchanged."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    new = size.to_bytes(4, "little")
    raw[info.header_offset + 22:info.header_offset + 26] = new   # local header: uncompressed size
    pos = raw.index(b"PK\x01\x02")
    while True:
        name_len = int.from_bytes(raw[pos + 28:pos + 30], "little")
        if raw[pos + 46:pos + 46 + name_len] == member.encode():
            raw[pos + 24:pos + 28] = new                            # central directory: uncompressed size
            break
        pos = raw.index(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(raw))


def test_member_larger_than_it_declares_is_cut_off(dumped, pmos, tmp_path):
    """A member whose headers lie about its size is never read past the declared size."""
    _, path, *_ = dumped
    members = read_members(path)
    manifest = json.loads(members["manifest.json"])
    real = manifest["files"]["memories.jsonl"]["size"]
    lying = write_zip(tmp_path / "lying.mkcube", members)
    shrink_declared_size(lying, "memories.jsonl", real - 10)
    assert_refused(pmos, tmp_path, lying,
                   rf"'memories\.jsonl' is {real - 10:,} bytes but manifest\.json says {real:,}")
    # With the manifest forged to agree, the capped read stops at the declared size and the CRC
    # (or the checksum) check fails: the extra bytes are never read.
    entry = dict(manifest["files"]["memories.jsonl"], size=real - 10)
    forged_manifest = dict(manifest, files=dict(manifest["files"], **{"memories.jsonl": entry}))
    forged = write_zip(tmp_path / "forged.mkcube", {**members, "manifest.json": json.dumps(forged_manifest).encode()})
    shrink_declared_size(forged, "memories.jsonl", real - 10)
    assert_refused(pmos, tmp_path, forged, r"memories\.jsonl.*(corrupt|sha256)")


def test_no_pickle_anywhere():
    for module in (portable, cubefile):
        source = Path(module.__file__).read_text()
        assert "import pickle" not in source and "allow_pickle=True" not in source
        assert "np.load(" not in source and "np.save(" not in source
