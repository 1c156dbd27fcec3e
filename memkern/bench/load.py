"""Load and crash test of a real server (``memkern bench load``).

What it does, against one store (a SQLite path or a ``postgresql://`` URL):

1. Starts ``memkern serve --store URL`` in a subprocess on ``127.0.0.1`` and a free port
   (``nodes`` of them, all on the same store, for the multi-node case), and creates a
   fresh cube ``load-<hex>`` through the API.
2. Starts ``clients`` client *processes* (``multiprocessing``, spawn) that wait on one
   start signal, then each make ``writes`` writes (``POST .../memories``, one chat message
   each) interleaved with searches (one after every ``search_every`` writes). Message ids
   are distinct per client, except that every ``shared_every``-th write is the same
   message (same session, id and text) sent by every client at about the same time:
   the store must keep it once and answer the others with ``duplicates``.
   Each client records the message ids the server acknowledged (HTTP 201).
3. With ``kill_at=N``: once N writes are acknowledged, SIGKILLs every server process and
   starts it again on the same store and port. Clients retry a request that failed to
   connect, lost its connection or got 503, with the same message id; the store's
   dedup makes the retry idempotent (a write that was committed but not acknowledged
   comes back as a duplicate).
4. Stops the servers, opens the store directly and checks: every acknowledged message id
   is in the cube exactly once (no duplicates, nothing missing, nothing unknown).
   Without a kill it also checks that the number of ``added`` answers equals the number
   of memories (each shared message was added by exactly one client).

It reports throughput (acknowledged writes/s and searches/s over the mixed phase, both
running at once) and p50/p95/p99 latency per operation (successful attempts only).

Everything is bounded: at most ``MAX_CLIENTS`` clients, ``MAX_WRITES`` writes each, and
every process is stopped after ``timeout_s``. Nothing listens beyond loopback. The cube
is deleted at the end (``keep=True`` keeps it); a temporary SQLite store is removed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

from memkern.errors import InvalidInputError, MemkernError

MAX_CLIENTS = 64
MAX_WRITES = 100_000
MAX_NODES = 8

#: Transient answers a client retries (the server is restarting or the store is busy).
_RETRY_STATUS = {502, 503, 504}

_WORDS = ("Lisbon Porto Oslo Berlin Kyoto Lima Cairo Denver hiking chess violin pottery sushi coffee "
          "marathon garden piano novel bicycle dentist sister brother manager project deadline holiday "
          "birthday concert museum recipe puppy kitten apartment promotion").split()


# ------------------------------------------------------------------------------------ helpers

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"n": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1000, 2)}


def _message(client: int, i: int, shared_every: int) -> tuple[str, str, dict[str, str]]:
    """(session, message id, message) of client ``client``'s ``i``-th write; shared writes are the same for all."""
    rng = random.Random(f"{client}/{i}")
    if shared_every and i % shared_every == shared_every - 1:
        words = random.Random(f"shared/{i}").sample(_WORDS, 4)
        return "shared", f"shared-{i}", {"role": "user", "name": "Everyone", "id": f"shared-{i}",
                                         "content": f"Shared note {i}: {' '.join(words)}"}
    words = rng.sample(_WORDS, 5)
    mid = f"c{client}-m{i}"
    return f"client-{client}", mid, {"role": "user", "name": f"Client {client}", "id": mid,
                                     "content": f"Client {client} note {i}: {' '.join(words)}"}


# ------------------------------------------------------------------------------------ clients

def _client_main(spec: dict[str, Any], acked: Any, ready: Any, go: Any) -> None:
    """One client process: write, search, retry on connection errors; results to ``spec['out']``."""
    import httpx

    k = spec["client"]
    bases: list[str] = spec["bases"]
    base = bases[k % len(bases)]
    cube = spec["cube"]
    deadline = spec["deadline"]
    rng = random.Random(1000 + k)
    result: dict[str, Any] = {"client": k, "acked": [], "added": 0, "duplicates": 0, "write_s": [], "search_s": [],
                              "searches": 0, "retries": 0, "errors": [], "gave_up": []}
    with ready.get_lock():
        ready.value += 1
    go.wait(timeout=max(1.0, deadline - time.time()))
    result["t_start"] = time.time()
    client = httpx.Client(base_url=base, headers=spec["headers"], timeout=httpx.Timeout(30.0, connect=5.0))

    def call(method: str, path: str, body: dict[str, Any]) -> tuple[httpx.Response | None, float]:
        delay = 0.02
        while True:
            started = time.perf_counter()
            try:
                response = client.request(method, path, json=body)
                if response.status_code not in _RETRY_STATUS:
                    return response, time.perf_counter() - started
            except httpx.TransportError:  # refused, reset, timed out: the server may be restarting
                pass
            if time.time() + delay > deadline:
                return None, 0.0
            result["retries"] += 1
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    try:
        for i in range(spec["writes"]):
            session, mid, message = _message(k, i, spec["shared_every"])
            response, took = call("POST", f"/v1/cubes/{cube}/memories", {"messages": [message], "session_id": session})
            if response is None:
                result["gave_up"].append(mid)
                break
            if response.status_code != 201:
                result["errors"].append(f"write {mid}: HTTP {response.status_code} {response.text[:200]}")
                if len(result["errors"]) >= 20:
                    break
                continue
            answer = response.json()
            if len(answer.get("added", [])) + len(answer.get("duplicates", [])) != 1:
                result["errors"].append(f"write {mid}: unexpected answer {str(answer)[:200]}")
                continue
            result["added"] += len(answer.get("added", []))
            result["duplicates"] += len(answer.get("duplicates", []))
            result["acked"].append(mid)
            result["write_s"].append(took)
            with acked.get_lock():
                acked.value += 1
            if spec["search_every"] and (i + 1) % spec["search_every"] == 0:
                query = " ".join(rng.sample(_WORDS, 2))
                response, took = call("POST", f"/v1/cubes/{cube}/search", {"query": query, "top_k": 5})
                if response is None:
                    break
                if response.status_code != 200:
                    result["errors"].append(f"search: HTTP {response.status_code} {response.text[:200]}")
                    continue
                result["searches"] += 1
                result["search_s"].append(took)
    except Exception as exc:  # recorded, so that the run fails with the reason
        result["errors"].append(f"client {k}: {type(exc).__name__}: {exc}")
    finally:
        client.close()
        result["t_end"] = time.time()
        Path(spec["out"]).write_text(json.dumps(result), encoding="utf-8")


# ------------------------------------------------------------------------------------ servers

@dataclass
class _Node:
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class _Servers:
    store: str
    workdir: Path
    nodes: list[_Node] = field(default_factory=list)

    def start(self, node: _Node, timeout_s: float = 60.0) -> None:
        import httpx

        env = {key: value for key, value in os.environ.items() if not key.startswith("MEMKERN_LLM")}
        env.pop("MEMKERN_STORE", None)
        cmd = [sys.executable, "-m", "memkern", "serve", "--host", "127.0.0.1", "--port", str(node.port),
               "--store", self.store]
        node.starts += 1
        with node.log.open("ab") as log:
            log.write(f"\n=== start {node.starts}: {' '.join(cmd[:-1])} STORE\n".encode())
            log.flush()
            node.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if node.process.poll() is not None:
                raise MemkernError(f"memkern serve exited with code {node.process.returncode}:\n{self.tail(node)}")
            try:
                if httpx.get(node.base + "/v1/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill(node)
        raise MemkernError(f"memkern serve did not answer within {timeout_s:.0f} s:\n{self.tail(node)}")

    def kill(self, node: _Node, sig: int = signal.SIGKILL, wait_s: float = 15.0) -> None:
        process = node.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=wait_s)

    def stop_all(self) -> None:
        for node in self.nodes:
            self.kill(node, signal.SIGTERM)

    def tail(self, node: _Node, lines: int = 30) -> str:
        try:
            return "\n".join(node.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _auth_headers(store: str, base: str) -> tuple[dict[str, str], str | None]:
    """No headers if the server lets anonymous callers in; else a fresh admin key made in the store
    directly. Also returns that temporary admin's id, for ``_delete_bench_user`` at the end."""
    import httpx

    if httpx.get(base + "/v1/cubes", timeout=10.0).status_code not in (401, 403):
        return {}, None
    from memkern.mos import MemOS
    from memkern.store import open_store

    with MemOS(store=open_store(store), llm=None) as mos:
        user = mos.create_user(f"load-bench-{uuid4().hex[:8]}", role="admin")
        key = mos.create_api_key(user)
    return {"Authorization": f"Bearer {key}", "X-API-Key": key}, user.id


def _delete_bench_user(store: str, user_id: str) -> None:
    from memkern.store import open_store

    opened = open_store(store)
    try:
        opened.delete_user(user_id)  # its key and grants go with it
    except MemkernError:
        pass
    finally:
        opened.close()


# ------------------------------------------------------------------------------------ the run

def _store_kind(store: str) -> str:
    from memkern.store import parse_store_url

    return parse_store_url(store)[0]


def _safe_store(store: str) -> str:
    """The store URL without a password."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in store:
        return store
    parts = urlsplit(store)
    if parts.password is None:
        return store
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def run_load(store: str | None = None, *, clients: int = 8, writes: int = 1000, search_every: int = 5,
             shared_every: int = 10, kill_at: int | None = None, nodes: int = 1, timeout_s: float = 900.0,
             keep: bool = False, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run the load test (see the module docstring) and return its report as a dict.

    ``store`` is a SQLite path or a ``postgresql://`` URL (``memkern.store.open_store``);
    ``None`` uses a temporary SQLite file. The report's ``ok`` is True when every check held.
    """
    import multiprocessing

    for value, what, top in ((clients, "clients", MAX_CLIENTS), (writes, "writes", MAX_WRITES),
                             (nodes, "nodes", MAX_NODES)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise InvalidInputError(f"{what} must be an integer from 1 to {top}, not {value!r}")
    for value, what in ((search_every, "search_every"), (shared_every, "shared_every")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInputError(f"{what} must be a non-negative integer (0: never), not {value!r}")
    if kill_at is not None and (not isinstance(kill_at, int) or not 1 <= kill_at < clients * writes):
        raise InvalidInputError(f"kill_at must be between 1 and {clients * writes - 1} (clients x writes), "
                                f"not {kill_at!r}")
    if not timeout_s > 0:
        raise InvalidInputError(f"timeout_s must be positive, not {timeout_s!r}")

    workdir = Path(tempfile.mkdtemp(prefix="memkern-load-"))
    store_url = store if store is not None else str(workdir / "load.db")
    backend = _store_kind(store_url)
    if backend == "sqlite":  # the servers run elsewhere: give them an absolute path
        from memkern.store import parse_store_url

        store_url = str(Path(parse_store_url(store_url)[1]["path"]).resolve())
    cube = f"load-{uuid4().hex[:12]}"
    servers = _Servers(store_url, workdir, [_Node(_free_port(), workdir / f"server-{n}.log") for n in range(nodes)])
    ctx = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    bench_user: str | None = None
    report: dict[str, Any] = {
        "backend": backend, "store": _safe_store(store_url) if store is not None else "(temporary SQLite file)",
        "nodes": nodes, "clients": clients, "writes_per_client": writes, "search_every": search_every,
        "shared_every": shared_every, "kill_at": kill_at, "cube": cube,
    }
    try:
        import httpx

        started = time.monotonic()
        for node in servers.nodes:
            servers.start(node)
        report["server_start_s"] = round(time.monotonic() - started, 2)
        headers, bench_user = _auth_headers(store_url, servers.nodes[0].base)
        report["auth"] = bool(headers)
        created = httpx.post(servers.nodes[0].base + "/v1/cubes", json={"name": cube, "owner": "load-bench"},
                             headers=headers, timeout=30.0)
        if created.status_code != 201:
            raise MemkernError(f"cannot create the cube: HTTP {created.status_code} {created.text[:300]}")

        acked = ctx.Value("q", 0)
        ready = ctx.Value("i", 0)
        go = ctx.Event()
        deadline = time.time() + timeout_s
        outs = [workdir / f"client-{k}.json" for k in range(clients)]
        for k in range(clients):
            spec = {"client": k, "bases": [n.base for n in servers.nodes], "cube": cube, "headers": headers,
                    "writes": writes, "search_every": search_every, "shared_every": shared_every,
                    "deadline": deadline, "out": str(outs[k])}
            process = ctx.Process(target=_client_main, args=(spec, acked, ready, go), daemon=True,
                                  name=f"memkern-load-client-{k}")
            process.start()
            processes.append(process)
        while ready.value < clients:
            if time.time() > deadline or any(p.exitcode not in (None, 0) for p in processes):
                raise MemkernError("the client processes did not start")
            time.sleep(0.01)

        kill_info: dict[str, Any] = {}
        killer = None
        if kill_at is not None:
            def kill_and_restart() -> None:
                while acked.value < kill_at:
                    if time.time() > deadline or all(p.exitcode is not None for p in processes):
                        return
                    time.sleep(0.002)
                killed = time.monotonic()
                kill_info["acked_at_kill"] = acked.value
                for node in servers.nodes:
                    servers.kill(node, signal.SIGKILL)
                kill_info["acked_after_kill"] = acked.value
                try:
                    for node in servers.nodes:
                        servers.start(node)
                except Exception as exc:  # reported; the clients then give up at the deadline
                    kill_info["restart_error"] = str(exc)
                kill_info["downtime_s"] = round(time.monotonic() - killed, 3)

            killer = threading.Thread(target=kill_and_restart, name="memkern-load-killer", daemon=True)
            killer.start()

        t0 = time.time()
        go.set()
        total = clients * writes
        while any(p.is_alive() for p in processes):
            if progress is not None:
                progress("writes acknowledged", min(acked.value, total), total)
            if time.time() > deadline + 5:
                break
            time.sleep(0.1)
        for p in processes:
            p.join(timeout=max(0.1, deadline + 10 - time.time()))
            if p.is_alive():
                p.terminate()
                p.join(5)
        if progress is not None:
            progress("writes acknowledged", min(acked.value, total), total)
        if killer is not None:
            killer.join(timeout=90)
        results = [json.loads(out.read_text(encoding="utf-8")) for out in outs if out.exists()]
        t_start = min((r["t_start"] for r in results), default=t0)
        t_end = max((r["t_end"] for r in results), default=time.time())
        servers.stop_all()

        report.update(_verify(store_url, cube, results, clients, writes, shared_every, kill_at))
        wall = max(t_end - t_start, 1e-9)
        writes_s = [s for r in results for s in r["write_s"]]
        search_s = [s for r in results for s in r["search_s"]]
        report.update({
            "wall_s": round(wall, 3),
            "writes_acked": len(writes_s),
            "searches": len(search_s),
            "writes_per_s": round(len(writes_s) / wall, 1),
            "searches_per_s": round(len(search_s) / wall, 1),
            "write_latency": _percentiles(writes_s),
            "search_latency": _percentiles(search_s),
            "retries": sum(r["retries"] for r in results),
            "client_errors": [e for r in results for e in r["errors"]][:20],
            "clients_gave_up": sum(1 for r in results if r["gave_up"]),
            "clients_reported": len(results),
        })
        if kill_at is not None:
            report["kill"] = kill_info
        report["ok"] = bool(report["checks_ok"] and not report["client_errors"] and not report["clients_gave_up"]
                            and len(results) == clients and "restart_error" not in kill_info
                            and (kill_at is None or "acked_at_kill" in kill_info))
        if not keep:
            _drop_cube(store_url, cube)
        return report
    except BaseException:
        report["server_log_tail"] = "\n".join(servers.tail(n) for n in servers.nodes)
        raise
    finally:
        for p in processes:
            if p.is_alive():
                p.terminate()
                p.join(5)
        for node in servers.nodes:
            servers.kill(node, signal.SIGKILL)
        if bench_user is not None:
            _delete_bench_user(store_url, bench_user)
        if store is None or not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _verify(store: str, cube: str, results: list[dict[str, Any]], clients: int, writes: int, shared_every: int,
            kill_at: int | None) -> dict[str, Any]:
    """Read the cube straight from the store and check it against what the clients were told."""
    from memkern.models import Filters
    from memkern.store import open_store

    opened = open_store(store)
    try:
        info = opened.get_cube(cube)
        items = opened.list_memories(info.id, Filters(state=None), None, 0)
    finally:
        opened.close()
    in_store = Counter(mid for item in items for mid in item.provenance.message_ids)
    acked = {mid for r in results for mid in r["acked"]}
    attempted = {_message(k, i, shared_every)[1] for k in range(clients) for i in range(writes)}
    missing = sorted(acked - set(in_store))
    duplicated = {mid: n for mid, n in in_store.items() if n > 1}
    unknown = sorted(set(in_store) - attempted)
    unacked_present = sorted(set(in_store) - acked - set(unknown))
    added = sum(r["added"] for r in results)
    dup_answers = sum(r["duplicates"] for r in results)
    checks = {
        "every_acked_write_present": not missing,
        "no_duplicates": not duplicated,
        "nothing_unknown": not unknown,
        "one_memory_per_message": len(items) == len(in_store),
    }
    if kill_at is None:  # without a crash every add was answered: exactly one "added" per stored message
        checks["added_answers_match_store"] = added == len(items)
    return {
        "memories_in_store": len(items),
        "distinct_ids_acked": len(acked),
        "distinct_ids_attempted": len(attempted),
        "added_answers": added,
        "duplicate_answers": dup_answers,
        "missing": missing[:20],
        "missing_count": len(missing),
        "duplicated": dict(list(duplicated.items())[:20]),
        "duplicated_count": len(duplicated),
        "unknown": unknown[:20],
        "unacked_but_present": len(unacked_present),
        "checks": checks,
        "checks_ok": all(checks.values()),
    }


def _drop_cube(store: str, cube: str) -> None:
    from memkern.store import open_store

    opened = open_store(store)
    try:
        opened.delete_cube(opened.get_cube(cube).id, "load-bench")
    except MemkernError:
        pass
    finally:
        opened.close()


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    w, s = report["write_latency"], report["search_latency"]
    lines = [
        f"memkern load test: {report['backend']} ({report['store']}), {report['nodes']} node(s), "
        f"{report['clients']} clients x {report['writes_per_client']} writes, a search every "
        f"{report['search_every']} writes, a shared message every {report['shared_every']}",
        f"  wall {report['wall_s']:.1f} s: {report['writes_per_s']:.1f} writes/s, {report['searches_per_s']:.1f} "
        f"searches/s ({report['writes_acked']} writes acknowledged, {report['searches']} searches, "
        f"{report['retries']} retries)",
        f"  write  latency p50 {w['p50_ms']} ms, p95 {w['p95_ms']} ms, p99 {w['p99_ms']} ms, max {w['max_ms']} ms",
        f"  search latency p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms",
    ]
    if report.get("kill") is not None:
        k = report["kill"]
        lines.append(f"  SIGKILL after {k.get('acked_at_kill')} acknowledged writes; back in {k.get('downtime_s')} s"
                     + (f"; restart failed: {k['restart_error']}" if "restart_error" in k else ""))
    lines.append(
        f"  store: {report['memories_in_store']} memories for {report['distinct_ids_acked']} acknowledged ids "
        f"({report['added_answers']} added, {report['duplicate_answers']} duplicate answers); missing "
        f"{report['missing_count']}, duplicated {report['duplicated_count']}, unknown {len(report['unknown'])}, "
        f"unacknowledged but stored {report['unacked_but_present']}")
    failed = [name for name, good in report["checks"].items() if not good]
    lines.append("  OK: every acknowledged write is in the store exactly once" if report["ok"] else
                 f"  FAILED: {', '.join(failed) or 'client errors'} {report['client_errors'][:3]}")
    return "\n".join(lines)
