"""Benchmarks: feed serving against a trivial endpoint (``bench.serve``) and a full
regeneration (``bench.regen``). Each starts its own redis-server and stops everything it
started; results go to ``bench/results/``."""
