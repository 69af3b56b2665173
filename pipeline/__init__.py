"""The flow: catalogue, ingest, rollup, regenerate, feed.

Plain functions that take a ``Store``, the settings, the time and (where they draw) a random
generator. Celery tasks and HTTP views both call these; tests call them directly.
"""
