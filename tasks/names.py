"""Every task's name and queue: what the web sends, what beat schedules and what the workers
register, spelled once."""
from __future__ import annotations

INGEST = "ingest.events"      # move an accepted batch of events onto the stream
ROLLUP = "rollup.run"         # count new events, exactly once
REGENERATE = "regenerate.run"  # rebuild every active cell's feed

QUEUE = {INGEST: "ingest", ROLLUP: "rollup", REGENERATE: "regen"}   # each task's own queue
QUEUES = tuple(QUEUE.values())   # what a worker of every kind consumes (the Procfile's -Q)
