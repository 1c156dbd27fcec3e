"""OpenAICompatibleLLM and CallCache against a real HTTP server on loopback (tests/fake_openai.py).

Every failure a real endpoint can produce is produced here by a real socket: malformed bodies,
dropped connections, 429 with Retry-After, 5xx, slow answers, 400 on an unsupported response
format. Backoffs and timeouts are tiny so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import types

import pytest
from fake_openai import FakeOpenAI, fake_embedding

from memkern.errors import InvalidInputError, LLMError, LLMOutputError
from memkern.llm import CallCache, LLMResponse, OpenAICompatibleLLM, llm_from_env

MESSAGES = [{"role": "system", "content": "You extract facts."}, {"role": "user", "content": "I live in Lyon."}]
SCHEMA = {"title": "Facts", "type": "object", "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
          "required": ["facts"], "additionalProperties": False}
FAST = {"backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 5}


def make(server: FakeOpenAI, **kwargs) -> OpenAICompatibleLLM:
    options = {**FAST, **kwargs}
    return OpenAICompatibleLLM(server.base_url, "fake-model", **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- answers that work ------------------------------------------------------------------------------


def test_plain_text_answer_and_request_shape():
    with FakeOpenAI(["Lyon, noted."]) as server:
        llm = make(server)
        response = llm.complete(MESSAGES, max_tokens=64, temperature=0.2)
    assert isinstance(response, LLMResponse)
    assert response.text == "Lyon, noted."
    assert response.model == "fake-model" and llm.name == "fake-model"
    assert response.cached is False
    assert response.completion_tokens == 2 and response.prompt_tokens == 7
    (request,) = server.requests
    assert request == {"model": "fake-model", "messages": MESSAGES, "max_tokens": 64, "temperature": 0.2}
    assert "authorization" not in server.request_headers[0]


def test_json_schema_is_sent_strict_and_json_is_returned():
    with FakeOpenAI(['{"facts": ["lives in Lyon"]}']) as server:
        llm = make(server, api_key="sk-test")
        response = llm.complete(MESSAGES, json_schema=SCHEMA, operation="extract")
    assert json.loads(response.text) == {"facts": ["lives in Lyon"]}
    request = server.requests[0]
    assert request["response_format"] == {"type": "json_schema",
                                          "json_schema": {"name": "Facts", "schema": SCHEMA, "strict": True}}
    assert request["messages"] == MESSAGES  # the schema is enforced by the server, not repeated in the prompt
    assert server.request_headers[0]["authorization"] == "Bearer sk-test"
    assert llm.structured_mode == "json_schema"


def test_code_fenced_json_is_unwrapped():
    with FakeOpenAI(['```json\n{"facts": []}\n```']) as server:
        response = make(server).complete(MESSAGES, json_schema=SCHEMA)
    assert response.text == '{"facts": []}'


def test_handler_and_callable_items_answer_from_the_request():
    def echo(request):
        return "echo: " + request["messages"][-1]["content"]

    with FakeOpenAI([echo], handler=lambda request: "from handler") as server:
        llm = make(server)
        assert llm.complete(MESSAGES).text == "echo: I live in Lyon."
        assert llm.complete(MESSAGES).text == "from handler"
        assert llm.complete(MESSAGES).text == "from handler"


# -- unusable answers: a clear LLMError, no retry -----------------------------------------------------


def test_model_output_that_is_not_json_raises_with_an_excerpt():
    with FakeOpenAI(["Sure! Here are the facts: lives in Lyon"]) as server:
        llm = make(server)
        with pytest.raises(LLMError, match="not valid JSON") as info:
            llm.complete(MESSAGES, json_schema=SCHEMA, operation="extract")
    assert server.base_url in str(info.value) and "Here are the facts" in str(info.value)
    assert len(server.requests) == 1
    assert llm.usage.as_dict()["extract"]["failures"] == 1


def test_truncated_output_at_max_tokens_says_so():
    with FakeOpenAI([{"content": '{"facts": ["lives in Ly', "finish_reason": "length"}]) as server, \
            pytest.raises(LLMError, match="cut at max_tokens=16"):
        make(server).complete(MESSAGES, json_schema=SCHEMA, max_tokens=16)


def test_malformed_response_body_raises():
    with FakeOpenAI([{"raw": '{"choices": [{"message": '}]) as server, \
            pytest.raises(LLMError, match="body that is not JSON") as info:
        make(server).complete(MESSAGES)
    assert "/v1/chat/completions" in str(info.value) and '{"choices"' in str(info.value)


@pytest.mark.parametrize("body, message", [
    ({"choices": []}, "no choices"),
    ({"object": "chat.completion"}, "no choices"),
    ({"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "stop"}]}, "empty content"),
    ({"choices": [{"message": {"role": "assistant", "content": None, "refusal": "I can't"}}]}, "refusal"),
    ({"choices": "nope"}, "unexpected body"),
    ([1, 2, 3], "unexpected body"),
])
def test_unusable_bodies_raise(body, message):
    with FakeOpenAI([{"status": 200, "body": body}]) as server:
        with pytest.raises(LLMError, match=message):
            make(server).complete(MESSAGES)
        assert len(server.requests) == 1


def test_empty_content_raises():
    with FakeOpenAI(["   "]) as server, pytest.raises(LLMError, match="empty content"):
        make(server).complete(MESSAGES)


def test_client_error_is_not_retried_and_names_the_status():
    error = {"error": {"message": "The model `nope` does not exist", "type": "invalid_request_error"}}
    with FakeOpenAI([{"status": 404, "body": error}]) as server:
        with pytest.raises(LLMError, match=r"HTTP 404 \(does base_url end with .*/v1\?\).*does not exist"):
            make(server).complete(MESSAGES)
        assert len(server.requests) == 1


# -- transient failures: bounded retries ------------------------------------------------------------


def test_truncated_connection_is_retried():
    with FakeOpenAI([{"truncate": True, "content": "a long answer " * 20}, "ok"]) as server:
        assert make(server).complete(MESSAGES).text == "ok"
        assert len(server.requests) == 2


def test_truncated_connection_every_time_raises():
    with FakeOpenAI(handler=lambda request: {"truncate": True, "content": "x" * 200}) as server:
        with pytest.raises(LLMError, match=r"dropped the connection.*gave up after 2 attempts") as info:
            make(server, retries=1).complete(MESSAGES)
        assert len(server.requests) == 2
    assert server.base_url + "/chat/completions" in str(info.value)


def test_429_then_success_honours_retry_after():
    script = [{"status": 429, "body": {"error": {"message": "Rate limit reached"}}, "headers": {"Retry-After": "0.3"}},
              "ok"]
    with FakeOpenAI(script) as server:
        llm = make(server)
        start = time.monotonic()
        assert llm.complete(MESSAGES, operation="chat").text == "ok"
        elapsed = time.monotonic() - start
    assert elapsed >= 0.3  # the backoff alone would have been ~1 ms
    assert len(server.requests) == 2
    assert llm.usage.as_dict()["chat"] == {"calls": 1, "cached_calls": 0, "prompt_tokens": 7,
                                           "completion_tokens": 1, "failures": 0}


def test_retry_after_ms_and_cap():
    script = [{"status": 429, "headers": {"retry-after-ms": "50"}},
              {"status": 503, "headers": {"Retry-After": "3600"}}, "ok"]
    with FakeOpenAI(script) as server:
        start = time.monotonic()
        assert make(server, max_retry_after_s=0.05).complete(MESSAGES).text == "ok"
        elapsed = time.monotonic() - start
    assert 0.1 <= elapsed < 2


def test_5xx_exhausted_raises_a_clear_error():
    script = [{"status": 500}, {"status": 502, "body": "Bad Gateway"},
              {"status": 503, "body": {"error": {"message": "overloaded, try later"}}}]
    with FakeOpenAI(script) as server:
        llm = make(server, retries=2)
        with pytest.raises(LLMError) as info:
            llm.complete(MESSAGES, operation="decide")
        assert len(server.requests) == 3
    message = str(info.value)
    assert server.base_url + "/chat/completions" in message
    assert "HTTP 503" in message and "overloaded, try later" in message and "gave up after 3 attempts" in message
    assert llm.usage.as_dict()["decide"]["failures"] == 1


def test_exhausted_script_answers_500_with_a_message():
    with FakeOpenAI([]) as server, pytest.raises(LLMError, match="script exhausted"):
        make(server, retries=0).complete(MESSAGES)


def test_timeout_then_success():
    with FakeOpenAI([{"delay": 2, "then": "too late"}, "ok"]) as server:
        start = time.monotonic()
        assert make(server, timeout_s=0.2).complete(MESSAGES).text == "ok"
        assert time.monotonic() - start < 1.5
        assert len(server.requests) == 2


def test_timeout_every_time_raises():
    with FakeOpenAI(handler=lambda request: {"delay": 2, "then": "too late"}) as server:
        llm = make(server, timeout_s=0.15, retries=1)
        with pytest.raises(LLMError, match=r"timed out after 0.15s.*gave up after 2 attempts"):
            llm.complete(MESSAGES, operation="extract")
        assert len(server.requests) == 2
    assert llm.usage.as_dict()["extract"]["failures"] == 1


def test_unreachable_endpoint_raises():
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAICompatibleLLM(url, "fake-model", retries=1, backoff_s=0.001, timeout_s=2)
    with pytest.raises(LLMError, match=r"could not be reached.*gave up after 2 attempts") as info:
        llm.complete(MESSAGES)
    assert url + "/chat/completions" in str(info.value)


# -- structured output fallback ---------------------------------------------------------------------


REJECT_SCHEMA = {"status": 400, "body": {"error": {
    "message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
    "type": "invalid_request_error", "param": "response_format"}}}
REJECT_OBJECT = {"status": 400, "body": "response_format json_object unsupported"}


def test_400_on_json_schema_falls_back_to_json_object_once_and_remembers():
    with FakeOpenAI([REJECT_SCHEMA, '{"facts": ["a"]}', '{"facts": ["b"]}']) as server:
        llm = make(server)
        assert json.loads(llm.complete(MESSAGES, json_schema=SCHEMA).text) == {"facts": ["a"]}
        assert llm.structured_mode == "json_object"
        assert json.loads(llm.complete(MESSAGES, json_schema=SCHEMA).text) == {"facts": ["b"]}
        first, second, third = server.requests
    assert first["response_format"]["type"] == "json_schema"
    for request in (second, third):  # the second call did not try json_schema again
        assert request["response_format"] == {"type": "json_object"}
        system = request["messages"][0]
        assert system["role"] == "system" and system["content"].startswith("You extract facts.")
        assert "JSON Schema" in system["content"] and '"additionalProperties": false' in system["content"]
        assert request["messages"][1:] == MESSAGES[1:]
    assert llm.usage.as_dict()["chat"]["calls"] == 2 and llm.usage.as_dict()["chat"]["failures"] == 0


def test_fallback_all_the_way_to_prompting():
    with FakeOpenAI([REJECT_SCHEMA, REJECT_OBJECT, '{"facts": []}', "plain"]) as server:
        llm = make(server)
        user_only = [{"role": "user", "content": "hi"}]
        assert llm.complete(user_only, json_schema=SCHEMA).text == '{"facts": []}'
        assert llm.structured_mode == "prompt"
        assert llm.complete(user_only).text == "plain"  # calls without a schema are untouched
    third, fourth = server.requests[2:]
    assert "response_format" not in third
    assert third["messages"][0]["role"] == "system" and "JSON Schema" in third["messages"][0]["content"]
    assert third["messages"][1:] == user_only
    assert fourth["messages"] == user_only and "response_format" not in fourth


def test_400_unrelated_to_response_format_does_not_fall_back():
    bad = {"status": 400, "body": {"error": {"message": "max_tokens is too large"}}}
    with FakeOpenAI([bad]) as server:
        llm = make(server)
        with pytest.raises(LLMError, match="HTTP 400.*max_tokens is too large"):
            llm.complete(MESSAGES, json_schema=SCHEMA)
        assert len(server.requests) == 1 and llm.structured_mode == "json_schema"


def test_explicit_json_schema_mode_never_falls_back():
    with FakeOpenAI([REJECT_SCHEMA]) as server:
        llm = make(server, structured="json_schema")
        with pytest.raises(LLMError, match="HTTP 400.*response_format"):
            llm.complete(MESSAGES, json_schema=SCHEMA)
        assert len(server.requests) == 1


def test_explicit_prompt_mode_never_sends_response_format():
    with FakeOpenAI(['{"facts": []}']) as server:
        make(server, structured="prompt").complete(MESSAGES, json_schema=SCHEMA)
    assert "response_format" not in server.requests[0]
    assert "JSON Schema" in server.requests[0]["messages"][0]["content"]


# -- usage accounting -------------------------------------------------------------------------------


def test_usage_is_recorded_per_operation_including_failures():
    script = [{"content": '{"facts": []}', "usage": {"prompt_tokens": 100, "completion_tokens": 10}},
              {"content": '{"facts": ["x"]}', "usage": {"prompt_tokens": 120, "completion_tokens": 12}},
              {"content": "ADD", "usage": {"prompt_tokens": 50, "completion_tokens": 1}},
              {"status": 500}, {"status": 500}]
    with FakeOpenAI(script) as server:
        llm = make(server, retries=1)
        llm.complete(MESSAGES, json_schema=SCHEMA, operation="extract")
        llm.complete(MESSAGES, json_schema=SCHEMA, operation="extract")
        llm.complete(MESSAGES, operation="decide")
        with pytest.raises(LLMError):
            llm.complete(MESSAGES, operation="judge")
    assert llm.usage.as_dict() == {
        "extract": {"calls": 2, "cached_calls": 0, "prompt_tokens": 220, "completion_tokens": 22, "failures": 0},
        "decide": {"calls": 1, "cached_calls": 0, "prompt_tokens": 50, "completion_tokens": 1, "failures": 0},
        "judge": {"calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "failures": 1},
    }


def test_missing_usage_counts_zero_tokens():
    body = {"choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    with FakeOpenAI([{"status": 200, "body": body}]) as server:
        llm = make(server)
        response = llm.complete(MESSAGES)
    assert (response.text, response.prompt_tokens, response.completion_tokens) == ("hi", 0, 0)
    assert llm.usage.as_dict()["chat"]["calls"] == 1


def test_bad_arguments_raise_invalid_input_and_send_nothing():
    with FakeOpenAI([]) as server:
        llm = make(server)
        for bad in ([], "hello", [{"role": "user"}], [{"content": "x"}], [{"role": "user", "content": 3}]):
            with pytest.raises(InvalidInputError):
                llm.complete(bad)
        with pytest.raises(InvalidInputError, match="max_tokens"):
            llm.complete(MESSAGES, max_tokens=0)
        with pytest.raises(InvalidInputError, match="temperature"):
            llm.complete(MESSAGES, temperature=-1)
        assert server.requests == [] and llm.usage.as_dict() == {}
    for kwargs in ({"base_url": "localhost:8000"}, {"model": ""}, {"retries": -1}, {"timeout_s": 0},
                   {"structured": "yes"}):
        with pytest.raises(InvalidInputError):
            OpenAICompatibleLLM(**{"base_url": "http://127.0.0.1:1/v1", "model": "m", **kwargs})


# -- call cache -------------------------------------------------------------------------------------


def test_cache_hit_avoids_a_request(tmp_path):
    with FakeOpenAI(['{"facts": ["lives in Lyon"]}', '{"facts": []}']) as server:
        llm = make(server, cache=CallCache(tmp_path / "cache"))
        first = llm.complete(MESSAGES, json_schema=SCHEMA, operation="extract")
        second = llm.complete(MESSAGES, json_schema=SCHEMA, operation="extract")
        assert len(server.requests) == 1
        assert first.cached is False and second.cached is True
        assert second.text == first.text and second.prompt_tokens == first.prompt_tokens
        llm.complete(MESSAGES, json_schema=SCHEMA, temperature=0.5, operation="extract")  # another call: a miss
        assert len(server.requests) == 2
    assert llm.usage.as_dict()["extract"]["calls"] == 3 and llm.usage.as_dict()["extract"]["cached_calls"] == 1


def test_cache_survives_a_new_client_and_a_new_server(tmp_path):
    with FakeOpenAI(["the answer"]) as server:
        make(server, cache=tmp_path / "cache").complete(MESSAGES, max_tokens=100)
    with FakeOpenAI([]) as server:  # would answer 500 to any request
        llm = make(server, cache=CallCache(tmp_path / "cache"))
        response = llm.complete(MESSAGES, max_tokens=100, temperature=0)  # 0 and 0.0 are the same call
        assert server.requests == []
    assert response.text == "the answer" and response.cached is True
    assert llm.usage.as_dict()["chat"]["cached_calls"] == 1


def test_cache_layout_is_fanned_out_atomic_and_auditable(tmp_path):
    cache = CallCache(tmp_path / "c")
    response = LLMResponse(text="t", model="m", prompt_tokens=3, completion_tokens=1)
    path = cache.put("m", MESSAGES, SCHEMA, 64, 0.0, response)
    key = CallCache.key("m", MESSAGES, SCHEMA, 64, 0.0)
    assert path == tmp_path / "c" / key[:2] / key[2:4] / f"{key}.json"
    assert [p.name for p in path.parent.iterdir()] == [f"{key}.json"]  # no temporary file left behind
    entry = json.loads(path.read_text())
    assert entry["request"] == {"model": "m", "messages": MESSAGES, "json_schema": SCHEMA, "max_tokens": 64,
                                "temperature": 0.0}
    assert len(cache) == 1
    assert cache.get("m", MESSAGES, SCHEMA, 64, 0.0) == response.model_copy(update={"cached": True})
    assert cache.get("m", MESSAGES, None, 64, 0.0) is None
    assert cache.get("other", MESSAGES, SCHEMA, 64, 0.0) is None


def test_corrupt_cache_entry_raises_instead_of_recomputing(tmp_path):
    cache = CallCache(tmp_path)
    path = cache.put("fake-model", MESSAGES, None, 64, 0.0, LLMResponse(text="t", model="m"))
    path.write_text('{"format": "memkern-llm-call-cache", "version": 1, "key": "x"')
    with pytest.raises(LLMError, match="corrupt.*delete it"):
        cache.get("fake-model", MESSAGES, None, 64, 0.0)
    entry = json.loads(json.dumps({"format": "memkern-llm-call-cache", "version": 1, "key": path.stem,
                                   "request": {"model": "fake-model", "messages": [], "json_schema": None,
                                               "max_tokens": 64, "temperature": 0.0},
                                   "response": {"text": "t", "model": "m"}}))
    path.write_text(json.dumps(entry))
    with FakeOpenAI(["fresh"]) as server:
        llm = make(server, cache=cache)
        with pytest.raises(LLMError, match="does not hold the request"):
            llm.complete(MESSAGES, max_tokens=64)
        assert server.requests == []
    assert llm.usage.as_dict()["chat"]["failures"] == 1


def test_failures_are_not_cached(tmp_path):
    with FakeOpenAI([{"status": 400, "body": "nope"}, "ok"]) as server:
        llm = make(server, cache=CallCache(tmp_path))
        with pytest.raises(LLMError):
            llm.complete(MESSAGES)
        assert llm.complete(MESSAGES).text == "ok"
        assert len(server.requests) == 2


def test_an_answer_that_is_not_json_is_counted_cached_and_replayed_as_it_happened(tmp_path):
    """Its tokens were spent, and a replay must repair and retry exactly as the original run did."""
    with FakeOpenAI(["sure! facts: none"]) as server:
        llm = make(server, cache=CallCache(tmp_path))
        with pytest.raises(LLMOutputError) as first:
            llm.complete(MESSAGES, json_schema=SCHEMA, operation="extract")
        assert first.value.content == "sure! facts: none" and first.value.response.prompt_tokens > 0
    usage = llm.usage.as_dict()["extract"]
    assert usage["calls"] == 1 and usage["failures"] == 1 and usage["prompt_tokens"] > 0
    with FakeOpenAI([]) as server:  # would answer 500 to any request
        replay = make(server, cache=CallCache(tmp_path))
        with pytest.raises(LLMOutputError, match="not valid JSON") as again:
            replay.complete(MESSAGES, json_schema=SCHEMA, operation="extract")
        assert server.requests == []
    assert again.value.content == "sure! facts: none" and again.value.response.cached is True
    assert replay.usage.as_dict()["extract"]["cached_calls"] == 1


# -- configuration from the environment -------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("MEMKERN_LLM", "MEMKERN_LLM_BASE_URL", "MEMKERN_LLM_MODEL", "MEMKERN_LLM_API_KEY", "OPENAI_API_KEY",
                 "MEMKERN_LLM_CACHE", "MEMKERN_LLM_STRUCTURED", "MEMKERN_LLM_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("value", [None, "", "none", "NONE"])
def test_llm_from_env_none(clean_env, value):
    if value is not None:
        clean_env.setenv("MEMKERN_LLM", value)
    assert llm_from_env() is None


def test_llm_from_env_openai(clean_env, tmp_path):
    with FakeOpenAI(["configured"]) as server:
        clean_env.setenv("MEMKERN_LLM", "openai")
        clean_env.setenv("MEMKERN_LLM_BASE_URL", server.base_url)
        clean_env.setenv("MEMKERN_LLM_MODEL", "env-model")
        clean_env.setenv("OPENAI_API_KEY", "sk-fallback")
        clean_env.setenv("MEMKERN_LLM_CACHE", str(tmp_path / "cache"))
        llm = llm_from_env()
        assert isinstance(llm, OpenAICompatibleLLM) and llm.name == "env-model"
        assert isinstance(llm.cache, CallCache) and llm.cache.directory == tmp_path / "cache"
        assert llm.complete(MESSAGES).text == "configured"
        assert server.requests[0]["model"] == "env-model"
        assert server.request_headers[0]["authorization"] == "Bearer sk-fallback"
        clean_env.setenv("MEMKERN_LLM_API_KEY", "sk-memkern")  # the specific variable wins
        clean_env.setenv("MEMKERN_LLM_STRUCTURED", "prompt")
        llm = llm_from_env()
        assert llm.structured_mode == "prompt"
        assert llm.complete(MESSAGES).cached is True  # same cache directory, same call
        assert len(server.requests) == 1


def test_llm_from_env_openai_api_key_preference(clean_env):
    with FakeOpenAI(["a"]) as server:
        clean_env.setenv("MEMKERN_LLM", "openai")
        clean_env.setenv("MEMKERN_LLM_BASE_URL", server.base_url)
        clean_env.setenv("MEMKERN_LLM_MODEL", "m")
        clean_env.setenv("OPENAI_API_KEY", "sk-fallback")
        clean_env.setenv("MEMKERN_LLM_API_KEY", "sk-memkern")
        llm_from_env().complete(MESSAGES)
        assert server.request_headers[0]["authorization"] == "Bearer sk-memkern"


@pytest.mark.parametrize("settings, message", [
    ({"MEMKERN_LLM": "openai"}, "MEMKERN_LLM_BASE_URL and MEMKERN_LLM_MODEL"),
    ({"MEMKERN_LLM": "openai", "MEMKERN_LLM_BASE_URL": "http://127.0.0.1:1/v1"}, "needs MEMKERN_LLM_MODEL"),
    ({"MEMKERN_LLM": "openai", "MEMKERN_LLM_MODEL": "m"}, "needs MEMKERN_LLM_BASE_URL"),
    ({"MEMKERN_LLM": "openai", "MEMKERN_LLM_BASE_URL": "127.0.0.1:1", "MEMKERN_LLM_MODEL": "m"}, "http://"),
    ({"MEMKERN_LLM": "openai", "MEMKERN_LLM_BASE_URL": "http://h/v1", "MEMKERN_LLM_MODEL": "m",
      "MEMKERN_LLM_STRUCTURED": "strict"}, "MEMKERN_LLM_STRUCTURED"),
    ({"MEMKERN_LLM": "openai", "MEMKERN_LLM_BASE_URL": "http://h/v1", "MEMKERN_LLM_MODEL": "m",
      "MEMKERN_LLM_TIMEOUT_S": "soon"}, "MEMKERN_LLM_TIMEOUT_S"),
    ({"MEMKERN_LLM": "gpt"}, "unknown MEMKERN_LLM 'gpt'"),
])
def test_llm_from_env_incomplete_configuration(clean_env, settings, message):
    for name, value in settings.items():
        clean_env.setenv(name, value)
    with pytest.raises(InvalidInputError, match=message):
        llm_from_env()


def test_llm_from_env_local_is_imported_lazily_with_the_cache(clean_env, tmp_path):
    """A stand-in module replaces memkern.llm.local so that this test does not load a model; it checks
    only the wiring (lazy import, cache passed through), which is what llm_from_env owns."""
    built = []

    class StandInLocalLLM:
        def __init__(self, **kwargs):
            built.append(kwargs)

    module = types.ModuleType("memkern.llm.local")
    module.LocalLLM = StandInLocalLLM
    clean_env.setitem(sys.modules, "memkern.llm.local", module)
    clean_env.setenv("MEMKERN_LLM", "local")
    assert isinstance(llm_from_env(), StandInLocalLLM) and built == [{}]
    clean_env.setenv("MEMKERN_LLM_CACHE", str(tmp_path))
    llm_from_env()
    assert isinstance(built[1]["cache"], CallCache) and built[1]["cache"].directory == tmp_path


# -- the fake server's embeddings, which the rest of the suite relies on ------------------------------


def test_fake_embeddings_through_the_openai_embedder():
    from memkern.embed.openai import OpenAIEmbedder

    with FakeOpenAI() as server:
        embedder = OpenAIEmbedder(base_url=server.base_url, model="fake-embed", retries=0)
        vectors = embedder.embed(["I live in Lyon", "Lyon is where I live", "quantum chromodynamics"])
        assert embedder.dim == 32 and vectors.shape == (3, 32)
        assert [round(x, 6) for x in vectors[0].tolist()] == [round(x, 6) for x in fake_embedding("I live in Lyon")]
        assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
        assert len(server.embedding_requests) == 2 and server.requests == []
