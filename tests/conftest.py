"""Fixtures shared by the whole suite: the embedder and a MemOS on a temporary file."""

from __future__ import annotations

import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from _embedders import default_test_embedder

from memkern import MemOS


@pytest.fixture(scope="session")
def embedder():
    """``StaticEmbedder()`` if it constructs, else the deterministic ``HashingEmbedder``."""
    return default_test_embedder()


@pytest.fixture
def mos(tmp_path, embedder):
    memos = MemOS(tmp_path / "m.db", embedder=embedder)
    try:
        yield memos
    finally:
        memos.close()


def ctx_of(cube):
    """The operation context of a cube handle, for tests that call ``memkern.ops`` functions directly
    (as the embedded default: no user, nothing checked)."""
    from memkern.ops.context import OpContext

    return OpContext(cube.session.kernel, None, cube.info, None)
