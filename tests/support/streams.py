"""What the events streams hold, counted in events (an entry holds a batch)."""
from __future__ import annotations

from pipeline.learning.ingest import decode_entries
from store import Store


def streamed_events(store: Store) -> int:
    """The accepted events every partition's stream holds, counted or not."""
    return sum(int((decode_entries(chunk).type_index > 0).sum())
               for chunk in store.events_between(0, 2**63 - 1))
