"""Serving a feed: the packed cell feed (``feedpack``), the request's path through it
(``feed``), the signed feed ids (``feedid``) and what each web process keeps between
requests (``process``: its feed cache and its buffered served-feed log)."""
