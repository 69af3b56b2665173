"""Every task's name and queue: what the web sends, what beat schedules and what the workers
register, spelled once."""
from __future__ import annotations

INGEST = "ingest.events"      # move an accepted batch of events onto the stream
ROLLUP = "rollup.run"         # count new events, exactly once
ROLLUP_PARTITION = "rollup.partition"  # count one partition's new events (EVENT_PARTITIONS)
REGENERATE = "regenerate.run"  # rebuild every active cell's feed (or plan a sharded run)
REGEN_SHARD = "regenerate.shard"  # rebuild one shard of a sharded run's cells
ARCHIVE = "archive.run"        # write counted events and served feeds to Parquet files

# each task's queue
QUEUE = {INGEST: "ingest", ROLLUP: "rollup", ROLLUP_PARTITION: "rollup", REGENERATE: "regen",
         REGEN_SHARD: "regen", ARCHIVE: "rollup"}
QUEUES = tuple(dict.fromkeys(QUEUE.values()))   # a worker of every kind (the Procfile's -Q)
