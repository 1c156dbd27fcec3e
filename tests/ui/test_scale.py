"""The timeline holds at 100,000 memories: pages are offset/limit reads of ``get_all``, and the
counts stop at their cap and say so."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from memkern import MemOS
from memkern.models import MemoryItem, Provenance
from memkern.ui import ui_router

N = 100_000


def test_timeline_pages_through_100k_memories(tmp_path, embedder):
    mos = MemOS(tmp_path / "big.db", embedder=embedder, llm=None)
    try:
        admin = mos.create_user("Ada", role="admin")
        key = mos.create_api_key(admin.id)
        cube = mos.as_user(key).create_cube("big").info
        for start in range(0, N, 20_000):  # setup straight into the store: the embedder is not under test
            items = [MemoryItem(id=f"m{i:06d}", cube_id=cube.id, owner=cube.owner, text=f"turn number {i}",
                                provenance=Provenance(session_id=f"s{i // 100:04d}", speaker="AB"[i % 2],
                                                      position=i % 100))
                     for i in range(start, start + 20_000)]
            mos.store.add_memories(cube.id, items, np.zeros((len(items), cube.dim), dtype=np.float32), "setup")
        app = FastAPI()
        app.include_router(ui_router(mos))
        client = TestClient(app)
        client.post("/ui/signin", data={"key": key})
        last = client.get(f"/ui/cubes/{cube.id}/timeline", params={"offset": N - 50, "limit": 50}).text
        assert "m099999" in last and "m099950" in last and "m099949" not in last
        assert 'rel="next"' not in last and f"offset={N - 100}" in last
        session = client.get(f"/ui/cubes/{cube.id}/timeline", params={"session": "s0999", "speaker": "B"}).text
        assert session.count('class="mem"') == 50 and "m099901" in session and "m099900" not in session
        overview = client.get(f"/ui/cubes/{cube.id}").text
        assert "<strong>100,000</strong> memories" in overview  # counted over the index, no cap
    finally:
        mos.close()
