"""A Python client for memkern's REST API, with the in-process API's methods, models and errors.

Code moves from embedded to server by changing one constructor::

    mos = MemOS()                                              # embedded
    mos = MemkernClient("http://127.0.0.1:8765", api_key=KEY)  # over HTTP

    cube = mos.create_cube("alice")                            # a MemCube, or a RemoteCube
    cube.add([{"role": "user", "content": "I moved to Oslo"}], session_id="s1")
    hits = cube.search("where does she live")                  # list[Hit] either way

The methods are ``MemOS``'s and ``MemCube``'s own (``memkern.api.methods``): the same names,
parameters and defaults by construction. Each call is turned into a request by the
operation's table entry (``memkern.api.table``): its path holds the path fields, a GET or
DELETE sends the other fields as the query string, the other methods as a JSON body; an
upload field sends the file as the body, a download field names where the response body is
written (whole, then renamed into place). The response is parsed into the operation's result
type, and a problem-details response is raised as the exception class the server raised
(``memkern.errors.error_for``, the one mapping every surface uses). A server that cannot be
reached raises ``StoreError`` (the store is unavailable, as far as the caller can tell).

Needs only ``httpx`` (a core dependency), not the server extra.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from memkern.api.methods import CubeMethods, StoreMethods
from memkern.api.spec import Operation
from memkern.api.table import OPERATIONS
from memkern.errors import CubeFileError, InvalidInputError, MemkernError, StoreError, error_for
from memkern.files import atomic_file
from memkern.models import CubeInfo

#: Where the REST API lives under the server's URL.
API_PREFIX = "/v1"
#: The response header carrying a download's result (the body is the file itself).
RESULT_HEADER = "X-Memkern-Result"
#: The media type of the files operations send and take (portable cube files are zips).
FILE_MEDIA_TYPE = "application/zip"
#: Bytes read from an upload, or written from a download, at a time.
CHUNK = 1 << 16
_PATH_FIELD = re.compile(r"\{(\w+)\}")


@cache
def _result_type(op: Operation) -> TypeAdapter[Any]:
    return TypeAdapter(op.output)


def _json(value: Any, what: str) -> str:
    """Strict JSON (no NaN or Infinity; odd code points escaped), or ``InvalidInputError``."""
    try:
        return json.dumps(to_jsonable_python(value), ensure_ascii=True, allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} cannot be sent as JSON: {exc}") from None


def _query(op: Operation, args: dict[str, Any]) -> dict[str, str]:
    """Fields as a query string: text as is, anything else (numbers, booleans, objects, null) as
    JSON text, which is how the server reads them. ``None`` where it is the default is left out."""
    fields = op.input.model_fields
    params = {}
    for name, value in args.items():
        if value is None and name in fields and fields[name].default is None:
            continue
        try:
            plain = to_jsonable_python(value)
        except PydanticSerializationError as exc:
            raise InvalidInputError(f"{op.name}: {name} cannot be sent: {exc}") from None
        params[name] = plain if isinstance(plain, str) else _json(plain, f"{op.name}: {name}")
    return params


def _digest(header: str | None) -> str | None:
    """The sha-256 of a ``Repr-Digest`` header (RFC 9530), in hex; ``None`` without one."""
    for part in (header or "").split(","):
        algorithm, _, value = part.strip().partition("=")
        if algorithm == "sha-256" and value.startswith(":") and value.endswith(":"):
            with contextlib.suppress(ValueError):
                return base64.b64decode(value[1:-1], validate=True).hex()
    return None


def _error_from(response: httpx.Response) -> MemkernError:
    """The memkern exception a problem-details response stands for, with the server's detail."""
    status = response.status_code
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    if isinstance(body, dict):
        problem_type, name = body.get("type"), body.get("error")
        cls = error_for(problem_type if isinstance(problem_type, str) else None,
                        name if isinstance(name, str) else None, status)
        return cls(str(body.get("detail") or body.get("title") or f"HTTP {status}"))
    text = response.text.strip()[:200]
    return error_for(None, None, status)(f"HTTP {status} from {response.request.method} "
                                         f"{response.request.url.path}" + (f": {text}" if text else ""))


class MemkernClient(StoreMethods):
    """``MemOS``'s methods over HTTP: every call is a request to a memkern server.

    ``api_key`` (``memkern key create USER``) is sent as ``Authorization: Bearer <key>`` with
    every request: the server runs every call as its user (401 raises
    ``AuthenticationError``, 403 ``PermissionDeniedError``). ``actor`` is the label the
    operation log records for calls that name none (a server without authentication; with
    it, the log names the key's user).
    """

    def __init__(self, url: str, *, api_key: str | None = None, actor: str | None = None, timeout: float = 30,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInputError(f"url must be a URL such as 'http://127.0.0.1:8765', not {url!r}")
        headers = {"Accept": "application/json"}
        if api_key is not None:
            if not isinstance(api_key, str) or not api_key.strip():
                raise InvalidInputError("api_key must be a non-empty string")
            headers["Authorization"] = f"Bearer {api_key.strip()}"
        self.url = url.strip().rstrip("/")
        self.actor = actor
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers, transport=transport)

    # -- context management ------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MemkernClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemkernClient({self.url!r})"

    def health(self) -> dict[str, Any]:
        """The server's health report (``GET /v1/health``)."""
        return self._send("GET", f"{API_PREFIX}/health").json()

    # -- the binding -------------------------------------------------------------------------------
    def _handle(self, info: CubeInfo) -> RemoteCube:
        return RemoteCube(self, info)

    def _call(self, name: str, args: dict[str, Any]) -> Any:
        """Run operation ``name`` on the server: the request its table entry describes."""
        op = OPERATIONS[name]
        if self.actor is not None and "actor" in op.fields and args.get("actor") is None:
            args = {**args, "actor": self.actor}
        http = op.http
        path = API_PREFIX + _PATH_FIELD.sub(lambda m: self._segment(op, m.group(1), args.get(m.group(1))), http.path)
        in_path = set(_PATH_FIELD.findall(http.path))
        rest = {k: v for k, v in args.items() if k not in in_path and k not in (http.upload, http.download)}
        if http.upload is not None:
            return self._upload(op, path, args[http.upload], rest)
        if http.method in ("GET", "DELETE"):
            request: dict[str, Any] = {"params": _query(op, rest)}
        else:
            request = {"content": _json(rest, f"{name}'s arguments").encode("ascii"),
                       "headers": {"Content-Type": "application/json"}}
        if http.download is not None:
            return self._download(op, path, args[http.download], request)
        return self._parse(op, self._send(http.method, path, **request).content)

    def _segment(self, op: Operation, field: str, value: Any) -> str:
        """One path segment, escaped. "." and ".." are sent as ``%2E`` (a URL would drop them, and
        ``memories/..`` would address the cube); "/" is refused: the server would read two segments."""
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"{op.name}: {field} must be a non-empty string, not {value!r}")
        if "/" in value:
            raise InvalidInputError(f"{op.name}: {field} {value!r} holds '/', which a URL path cannot carry")
        if value in (".", ".."):
            return value.replace(".", "%2E")
        try:
            return quote(value, safe="")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"{op.name}: {field} is not valid Unicode (at character {exc.start})") from None

    # -- transport ---------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **request: Any) -> httpx.Response:
        with self._connection():
            response = self._http.request(method, path, **request)
        if response.is_error:
            raise _error_from(response)
        return response

    @contextlib.contextmanager
    def _connection(self) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            raise StoreError(f"cannot reach the memkern server at {self.url}: {exc}") from exc

    def _parse(self, op: Operation, content: bytes | str) -> Any:
        try:
            return _result_type(op).validate_json(content)
        except ValidationError as exc:
            raise MemkernError(f"unexpected answer to {op.name} from {self.url}: {exc}") from None

    def _upload(self, op: Operation, path: str, source: Any, rest: dict[str, Any]) -> Any:
        """Send the file ``source`` as the body (streamed), the other fields as the query string."""
        try:
            handle = open(source, "rb")  # noqa: SIM115 - closed below, after the request
        except FileNotFoundError:
            raise CubeFileError(f"no cube file at {source}") from None
        except IsADirectoryError:
            raise CubeFileError(f"{source} is a directory, not a cube file") from None
        except OSError as exc:
            raise CubeFileError(f"cannot read {source}: {exc}") from None
        params = _query(op, rest)
        with handle:
            size = Path(source).stat().st_size
            response = self._send(op.http.method, path, params=params, content=iter(lambda: handle.read(CHUNK), b""),
                                  headers={"Content-Type": FILE_MEDIA_TYPE, "Content-Length": str(size)})
        return self._parse(op, response.content)

    def _download(self, op: Operation, path: str, target: Any, request: dict[str, Any]) -> Any:
        """Write the response body to ``target`` whole, checked against the server's digest
        (nothing is left there on an error). The result comes in a header; its download field
        names the local file."""
        local = Path(target)
        if local.is_dir():
            raise InvalidInputError(f"cannot write {op.name}'s file to {local}: it is a directory")
        with self._connection(), self._http.stream(op.http.method, path, **request) as response:
            if response.is_error:
                response.read()
                raise _error_from(response)
            header = response.headers.get(RESULT_HEADER)
            if header is None:
                raise MemkernError(f"the server sent {op.name}'s file without its result ({RESULT_HEADER})")
            expected = _digest(response.headers.get("Repr-Digest"))
            with atomic_file(local) as out:
                received = hashlib.sha256()
                for chunk in response.iter_bytes(CHUNK):
                    received.update(chunk)
                    out.write(chunk)
                if expected is not None and received.hexdigest() != expected:
                    raise StoreError(f"the file {op.name} received differs from the one the server sent "
                                     f"(sha-256 {received.hexdigest()}, not {expected}); nothing was written")
        return self._parse(op, header).model_copy(update={op.http.download: str(local)})


class RemoteCube(CubeMethods):
    """A cube on a memkern server: ``MemCube``'s methods, same arguments, same return types."""

    def __init__(self, client: MemkernClient, info: CubeInfo) -> None:
        self.client = client
        self.info = info

    def _call(self, name: str, args: dict[str, Any]) -> Any:
        return self.client._call(name, args)
