"""Dense search on PostgreSQL: the database's HNSW index against the in-process exact scan.

A cube of ``--items`` turns (the ``bench scale`` corpus, bundled embedder, ingested through
the public API into a schema of its own, reused by later runs) is searched both ways in one
run, on the same questions:

- the in-process copy (``memkern.retrieval.index``): every vector held by the node, scanned
  exactly (or by usearch's graph when it is installed: ``usearch_installed``);
- the database (``memkern.store.postgres.dense``): the cube's partial HNSW index, built
  concurrently while a writer keeps adding turns (its add latency is reported beside the
  same writer's before and after the build), the node's copy then holding no vectors.

Reported: dense p50/p95 (the 200 candidates a search asks for, and a top 10), recall of the
top 10 against the exact scan (and counting ties with the exact 10th cosine as hits: the
corpus repeats some texts word for word), a one-session search, search end to end both ways,
and the memory of a fresh process whose copy holds the vectors against one whose copy does not.

    nice python scripts/bench_pg_dense.py --dsn "$(cat /work/notes/pgdsn)" --items 100000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import numpy as np
import psycopg

from memkern.bench.scale import generate, resident_mb
from memkern.embed import default_embedder
from memkern.errors import NotFoundError
from memkern.models import Filters, MemoryItem, MemoryKind, Provenance
from memkern.mos import MemOS
from memkern.retrieval import ann
from memkern.retrieval.dense import dense_top
from memkern.retrieval.index import IndexCache
from memkern.retrieval.search import filter_mask
from memkern.store.postgres import PostgresStore
from memkern.store.postgres import dense as pg_dense

CUBE = "scale"
CANDIDATES = 200  # SearchConfig.candidates: what a search asks of the dense half


def _ms(seconds: list[float], pct: float) -> float:
    return round(float(np.percentile(seconds, pct)) * 1000, 2)


def _timed(fn: Any, runs: list[Any]) -> tuple[list[float], list[Any]]:
    seconds, results = [], []
    for arg in runs:
        started = time.perf_counter()
        results.append(fn(arg))
        seconds.append(time.perf_counter() - started)
    return seconds, results


def _ensure_cube(dsn: str, schema: str, items: int, seed: int) -> dict[str, Any]:
    """The corpus ingested into ``schema`` (reused when it holds it already)."""
    store = PostgresStore(dsn, schema=schema)
    with MemOS(store=store, embedder=default_embedder()) as mos:
        try:
            found = mos.get_cube(CUBE)
        except NotFoundError:
            found = None
        if found is not None:
            count = _admin(dsn, schema, f"SELECT count(*) FROM index_rows WHERE cube_id = '{found.info.id}'")[0][0]
            if count >= items:
                return {"reused": True, "rows": count}
            raise SystemExit(f"schema {schema} holds {count} rows, not {items}: drop it or pick another --schema")
        cube = mos.create_cube(CUBE, owner="bench")
        started = time.perf_counter()
        for session_id, messages in generate(items, 1, seed=seed).sessions:
            cube.add(messages=messages, session_id=session_id)
        return {"reused": False, "ingest_s": round(time.perf_counter() - started, 1)}


def _writer(store: PostgresStore, cube_id: str, vector: np.ndarray, stop: threading.Event, tag: str) -> list[float]:
    """Single-turn adds, one every 50 ms until ``stop``: how long a writer waits (during a build)."""
    seconds: list[float] = []
    number = 0
    while not stop.is_set():
        number += 1
        item = MemoryItem(id=uuid.uuid4().hex, cube_id=cube_id, owner="bench", kind=MemoryKind.TURN,
                          text=f"writer {tag} turn {number} {uuid.uuid4().hex}",
                          provenance=Provenance(session_id=f"writer-{tag}", message_ids=[f"{tag}-{number}"]))
        started = time.perf_counter()
        store.add_memories(cube_id, [item], vector[None, :])
        seconds.append(time.perf_counter() - started)
        stop.wait(0.05)
    return seconds


def _writes_during(store: PostgresStore, cube_id: str, vector: np.ndarray, tag: str, work: Any) -> tuple[Any, list[float]]:
    """``work()`` while a writer adds turns; its result and the writer's add latencies."""
    stop = threading.Event()
    latencies: list[float] = []
    thread = threading.Thread(target=lambda: latencies.extend(_writer(store, cube_id, vector, stop, tag)))
    thread.start()
    try:
        result = work()
    finally:
        stop.set()
        thread.join()
    return result, latencies


def _admin(dsn: str, schema: str, statement: str) -> list[tuple]:
    """One statement in the bench's schema, outside the store (autocommit)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}", public')
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def _latency(seconds: list[float]) -> dict[str, Any]:
    return {"n": len(seconds), "p50_ms": _ms(seconds, 50), "p95_ms": _ms(seconds, 95),
            "max_ms": round(max(seconds) * 1000, 2)} if seconds else {"n": 0}


def run(dsn: str, schema: str, items: int, queries: int, seed: int) -> dict[str, Any]:
    result: dict[str, Any] = {"items": items, "queries": queries, "schema": schema, "cpus": os.cpu_count()}
    result["cube"] = _ensure_cube(dsn, schema, items, seed)
    questions = [q.text for q in generate(items, queries, seed=seed).questions]
    embedder = default_embedder()
    query_vectors = embedder.embed(questions)
    store = PostgresStore(dsn, schema=schema)
    with MemOS(store=store, embedder=embedder) as mos:
        cube = mos.get_cube(CUBE)
        cube_id, dim = cube.info.id, embedder.dim
        index_name = pg_dense.dense_index_name(cube_id, dim)
        _admin(dsn, schema, f"DROP INDEX IF EXISTS {index_name}")  # the build is measured: start without it
        pg_dense.DENSE_MIN_ROWS = 10**12  # the database path stays off until the index is built below

        # -- the in-process copy, exact scan ---------------------------------------------------------
        cache = IndexCache(store)
        started = time.perf_counter()
        index = cache.get(cube_id, dim)
        result["copy_load_s"] = round(time.perf_counter() - started, 2)
        result["copy_vectors_mb"] = round(index.vectors.nbytes / 2**20, 1)
        filters = Filters()
        mask = filter_mask(index, filters)
        result["usearch_installed"] = ann.DenseAnn(dim).available
        graph_from, ann.ANN_MIN_ROWS = ann.ANN_MIN_ROWS, 10**12  # the exact scan first
        scan_s, _ = _timed(lambda q: dense_top(index, store, cube_id, q, mask, filters, CANDIDATES), list(query_vectors))
        result["in_process"] = {"dense_top_200_exact_scan": _latency(scan_s)}
        # Then the in-process graph (usearch), built in the background by the first search past its switch
        # point: waited for, so that its build competes with nothing timed (here or in the database's part).
        ann.ANN_MIN_ROWS = graph_from
        cube.search(questions[0], top_k=10)
        index.dense_top(query_vectors[0], mask, CANDIDATES)
        started = time.perf_counter()
        cache.wait_approximate()
        mos.kernel.indexes.wait_approximate()
        result["in_process"]["graph_build_wait_s"] = round(time.perf_counter() - started, 1)
        if ann.DenseAnn(dim).available:
            graph_s, _ = _timed(lambda q: dense_top(index, store, cube_id, q, mask, filters, CANDIDATES),
                                list(query_vectors))
            result["in_process"]["dense_top_200_graph"] = _latency(graph_s)
        for recipe in ("dense", "hybrid"):
            seconds, _ = _timed(lambda text, r=recipe: cube.search(text, top_k=10, config=r), questions)
            result["in_process"][f"search_{recipe}"] = _latency(seconds)

        # -- the build, with a writer adding turns ---------------------------------------------------
        writer_vector = query_vectors[0]
        _, before = _writes_during(store, cube_id, writer_vector, "before", lambda: time.sleep(5))
        started = time.perf_counter()
        built, during = _writes_during(store, cube_id, writer_vector, "during",
                                       lambda: store.ensure_dense_index(cube_id, dim))
        build_s = time.perf_counter() - started
        _, after = _writes_during(store, cube_id, writer_vector, "after", lambda: time.sleep(5))  # into the graph
        result["build"] = {"built": built, "seconds": round(build_s, 1), "writer_add_before": _latency(before),
                           "writer_add_during": _latency(during), "writer_add_after": _latency(after),
                           "maintenance_work_mem": pg_dense.BUILD_MEMORY}
        result["index_mb"] = round(_admin(dsn, schema, f"SELECT pg_relation_size('{index_name}'::regclass)")[0][0]
                                   / 2**20, 1)

        # -- the database's HNSW index ----------------------------------------------------------------
        cache.get(cube_id, dim)  # the store searches the cube now: the copy is reloaded without vectors
        cache.wait_rebuilds()
        index = cache.get(cube_id, dim)
        result["copy_after_build_holds_vectors"] = index.holds_vectors
        mask = filter_mask(index, filters)
        exact_store = _InProcess(dsn, schema=schema)  # the exact truth, from a copy holding the vectors
        exact_index = IndexCache(exact_store).get(cube_id, dim)
        graph_from, ann.ANN_MIN_ROWS = ann.ANN_MIN_ROWS, 10**12  # the exact scan, and no graph built meanwhile
        truth = [exact_index.dense_top(q, filter_mask(exact_index, filters), 10) for q in query_vectors]
        ann.ANN_MIN_ROWS = graph_from
        assert len(exact_index) == len(index)
        del exact_index
        exact_store.close()
        db = {}
        for count in (CANDIDATES, 10):
            seconds, found = _timed(lambda q, c=count: store.dense_search(cube_id, q, c, filters), list(query_vectors))
            rows = [[index.row_of.get(m) for m, _ in hits[:10]] for hits in found]
            recall = statistics.mean(len(set(r) & set(t[0].tolist())) / len(t[0]) for r, t in zip(rows, truth))
            # The corpus repeats some texts word for word: a hit tied with the exact 10th cosine is as good.
            tied = statistics.mean(float(np.mean([score >= t[1][-1] - 1e-6 for _, score in hits[:10]]))
                                   for hits, t in zip(found, truth))
            db[f"dense_search_{count}"] = {**_latency(seconds), "recall_at_10": round(recall, 4),
                                           "recall_at_10_ties_counted": round(tied, 4)}
        seconds, _ = _timed(lambda q: dense_top(index, store, cube_id, q, mask, filters, CANDIDATES), list(query_vectors))
        db["dense_top_200"] = _latency(seconds)
        session = Filters(session_id=str(index.session_names[int(index.session_codes[len(index) // 2])]))
        share = int(np.count_nonzero(filter_mask(index, session))) / index.live_count
        for label, told in (("walk_first", 1.0), ("share_given", share)):
            seconds, found = _timed(lambda q, s=told: store.dense_search(cube_id, q, CANDIDATES, session, s),
                                    list(query_vectors[:50]))
            db[f"dense_search_200_one_session_{label}"] = {**_latency(seconds), "hits": len(found[0])}
        cube.search(questions[0], top_k=10)  # the kernel's own copy drops its vectors too
        mos.kernel.indexes.wait_rebuilds()
        for recipe in ("dense", "hybrid"):
            seconds, _ = _timed(lambda text, r=recipe: cube.search(text, top_k=10, config=r), questions)
            db[f"search_{recipe}"] = _latency(seconds)
        result["database"] = db
    store.close()

    # -- memory of a fresh process: the copy with its vectors, or without (the database searches) ----
    result["memory"] = {}
    for mode in ("copy", "database"):
        out = subprocess.run([sys.executable, __file__, "--dsn", dsn, "--schema", schema, "--items", str(items),
                              "--queries", "20", "--memory-probe", mode], capture_output=True, text=True, check=True)
        result["memory"][mode] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


class _InProcess(PostgresStore):
    """The store as it was before the database searched vectors: every copy holds them, and scans."""

    def dense_search(self, cube_id: str, query_vector: np.ndarray, limit: int, filters: Filters,
                     share: float = 1.0) -> list[tuple[str, float]] | None:
        return None

    def dense_search_ready(self, cube_id: str, dim: int) -> bool:
        return False


def _memory_probe(dsn: str, schema: str, mode: str, queries: int, items: int, seed: int) -> dict[str, Any]:
    """RSS of a fresh process after loading the cube's index copy and 20 dense searches through it:
    the copy holding every vector (``copy``), or the copy without them and the database searching."""
    embedder = default_embedder()
    vectors = embedder.embed([q.text for q in generate(items, queries, seed=seed).questions])
    store = _InProcess(dsn, schema=schema) if mode == "copy" else PostgresStore(dsn, schema=schema)
    try:
        cube_id = store.get_cube(CUBE).id
        baseline = resident_mb()["rss_mb"]
        index = IndexCache(store).get(cube_id, embedder.dim)
        mask = filter_mask(index, Filters())
        for q in vectors:
            rows, _ = dense_top(index, store, cube_id, q, mask, Filters(), CANDIDATES)
            assert len(rows) == CANDIDATES
        return {"rss_before_mb": baseline, **resident_mb(), "holds_vectors": index.holds_vectors,
                "vectors_mb": round(index.vectors.nbytes / 2**20, 1)}
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--schema", default=None, help="default: bench_dense_<items>")
    parser.add_argument("--memory-probe", choices=["copy", "database"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    schema = args.schema or f"bench_dense_{args.items}"
    if args.memory_probe:
        print(json.dumps(_memory_probe(args.dsn, schema, args.memory_probe, args.queries, args.items, args.seed)))
        return
    print(json.dumps(run(args.dsn, schema, args.items, args.queries, args.seed), indent=2))


if __name__ == "__main__":
    main()
