"""Queue tests run on every store back end (``tests/store``'s ``make_store``)."""

from __future__ import annotations

import pytest
from store.conftest import BACKENDS, _cleanup, make_store


@pytest.fixture(params=BACKENDS)
def any_store(request, tmp_path):
    s = make_store(request.param, tmp_path)
    try:
        yield s
    finally:
        _cleanup(s)
