"""Employer diversity: at most ``cap`` ads of one employer among any ``window`` consecutive
positions of a feed.

Employers are codes (a normalised company name's hash, ``pipeline.catalogue``); 0 is an
ad whose employer is unknown, which no rule holds back. An order is repaired greedily, best
first: each position takes the first ad, among those held back and then the rest of the
order, whose employer has fewer than ``cap`` ads in the ``window - 1`` positions before it;
an ad held back keeps its place in the queue, so it comes back as soon as the rule allows,
and the ads it let through keep their own order. ``diversified`` does this to one short list
(a served feed's few dozen ads, once a request, in plain Python); ``diversify_orders`` to
every row of a regeneration's orders, repairing only the rows that break the rule.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WINDOW = 10          # a screen: the ads a phone shows at once (bandit.SCREEN)
UNKNOWN = 0          # an ad with no employer code: never held back


def diversified(employers: Sequence[int], cap: int, window: int = WINDOW,
                limit: int | None = None) -> list[int]:
    """The positions of ``employers`` (an order's ads' employer codes, best first) in the
    repaired order, at most ``limit`` of them; an ad the rule cannot place before the
    candidates run out is left out.

    >>> diversified([7, 7, 7, 1, 2], cap=2)
    [0, 1, 3, 4]
    >>> diversified([7, 7, 7, 1, 2, 3, 4, 5, 6, 8, 9, 10], cap=2)
    [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 2, 11]
    >>> diversified([0, 0, 0, 5], cap=1, limit=3)
    [0, 1, 2]
    """
    limit = len(employers) if limit is None else limit
    out: list[int] = []
    held: list[int] = []
    following = 0
    while len(out) < limit:
        recent = [employers[p] for p in out[max(0, len(out) - window + 1):]]
        placed = -1
        for j, p in enumerate(held):
            if recent.count(employers[p]) < cap:
                placed = held.pop(j)
                break
        while placed < 0 and following < len(employers):
            p, following = following, following + 1
            e = employers[p]
            if e == UNKNOWN or recent.count(e) < cap:
                placed = p
            else:
                held.append(p)
        if placed < 0:
            break
        out.append(placed)
    return out


def breaks_rule(employers: np.ndarray, cap: int, window: int = WINDOW) -> np.ndarray:
    """For each row of ``employers`` (rows, n), whether some employer has more than ``cap``
    ads among ``window`` consecutive positions (unknown employers aside).

    >>> breaks_rule(np.array([[3, 3, 1, 3], [3, 1, 2, 3], [0, 0, 0, 0]]), cap=2, window=4)
    array([ True, False, False])
    """
    rows, n = employers.shape
    same = np.zeros((rows, n), dtype=np.int64)       # earlier ads of one's employer in reach
    for d in range(1, min(window, n)):
        same[:, d:] += employers[:, d:] == employers[:, :-d]
    return ((same >= cap) & (employers != UNKNOWN)).any(axis=1)


def diversify_orders(orders: np.ndarray, employers: np.ndarray, cap: int,
                     window: int = WINDOW) -> tuple[np.ndarray, int]:
    """``orders`` (..., n) of ad positions (-1 past a row's end) repaired row by row, each
    ad's employer read from ``employers`` (by ad position); an ad the rule cannot place goes
    after the others, in its order. Returns the orders and how many rows were repaired
    (only the rows that break the rule are: the others are returned as they are).

    >>> o, n = diversify_orders(np.array([[0, 1, 2, 3, -1]]), np.array([4, 4, 4, 9]), cap=2)
    >>> o.tolist(), n
    ([[0, 1, 3, 2, -1]], 1)
    """
    if cap <= 0 or orders.size == 0:
        return orders, 0
    flat = orders.reshape(-1, orders.shape[-1])
    listed = flat >= 0
    codes = np.full(flat.shape, UNKNOWN, dtype=np.asarray(employers).dtype)
    codes[listed] = employers[flat[listed]]
    rows = np.flatnonzero(breaks_rule(codes, cap, window))
    if not len(rows):
        return orders, 0
    out = flat.copy()
    for r in rows.tolist():
        length = int(listed[r].sum())
        row_codes = codes[r, :length].tolist()
        kept = diversified(row_codes, cap, window)
        left = sorted(set(range(length)) - set(kept))
        out[r, :length] = flat[r, kept + left]
    return out.reshape(orders.shape), len(rows)
