"""The store's unit tests again, on a real redis-server: every Lua script runs for real. The
test files of the Store and its areas are imported whole (not test_keys.py, test_rows.py or
test_scripts.py: they reach no server)."""
from __future__ import annotations

import pytest

from store import Store
from tests.unit.store.test_catalogue_copy import *  # noqa: F401,F403
from tests.unit.store.test_catalogue_store import *  # noqa: F401,F403
from tests.unit.store.test_event_store import *  # noqa: F401,F403
from tests.unit.store.test_feed_store import *  # noqa: F401,F403
from tests.unit.store.test_job_store import *  # noqa: F401,F403
from tests.unit.store.test_limit_store import *  # noqa: F401,F403
from tests.unit.store.test_store import *  # noqa: F401,F403
from tests.unit.store.test_user_store import *  # noqa: F401,F403


@pytest.fixture
def fake_store(real_store: Store) -> Store:
    return real_store
