"""Serving a feed: the request's path (``feed``: the answer, its signed id and the log of
what was served) through a cell's precomputed feed (``cellfeed``: its packed value and the
cache each web process keeps of it)."""
