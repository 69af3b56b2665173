"""The flow as plain functions, by what it serves: ``serving`` (a feed request), ``learning``
(ingest, rollup, regeneration), ``reports`` (CTR, evaluation, stats, health) and
``catalogue`` (the ads).

Plain functions that take a ``Store``, the settings, the time and (where they draw) a random
generator. Celery tasks and HTTP views both call these; tests call them directly.
"""
