"""The store's unit tests again, on a real redis-server: every Lua script runs for real."""
from __future__ import annotations

import pytest

from store import Store
from tests.unit.store.test_store import *  # noqa: F401,F403  (the same tests, collected here)


@pytest.fixture
def fake_store(real_store: Store) -> Store:
    return real_store
