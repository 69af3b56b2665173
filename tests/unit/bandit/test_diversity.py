"""bandit.diversity: a repaired order never has more than ``cap`` ads of one employer among
``window`` consecutive positions; it keeps every ad it can place, in the order given where
the rule allows; an order that keeps the rule is left as it is; the vectorised repair of a
regeneration's orders equals the repair of each row."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.diversity import UNKNOWN, WINDOW, breaks_rule, diversified, diversify_orders


def most_in_a_window(codes: list[int], window: int) -> int:
    """The most ads of one known employer among any ``window`` consecutive positions."""
    most = 0
    for start in range(max(1, len(codes) - window + 1)):
        part = [c for c in codes[start:start + window] if c != UNKNOWN]
        most = max([most, *(part.count(c) for c in set(part))])
    return most


employers = st.lists(st.integers(0, 4), max_size=60)


@settings(max_examples=300, deadline=None)
@given(employers, st.integers(1, 3), st.integers(2, 12))
def test_the_repaired_order_keeps_the_rule_and_every_ad_it_can(codes, cap, window):
    out = diversified(codes, cap, window)
    assert len(set(out)) == len(out) and set(out) <= set(range(len(codes)))
    assert most_in_a_window([codes[p] for p in out], window) <= cap
    # an ad left out could not be placed: its employer fills the end's window
    for p in set(range(len(codes))) - set(out):
        tail = [codes[q] for q in out[max(0, len(out) - window + 1):]]
        assert tail.count(codes[p]) >= cap
    # an ad comes after a later one only if its employer had filled the window before it
    for i, p in enumerate(out):
        if any(q > p for q in out[:i]):
            before = [codes[q] for q in out[max(0, i - window + 1):i]]
            passed = min(q for q in out[:i] if q > p)
            at = out.index(passed)
            assert [codes[q] for q in out[max(0, at - window + 1):at]].count(codes[p]) >= cap
            assert before.count(codes[p]) < cap


@settings(max_examples=200, deadline=None)
@given(employers, st.integers(1, 3))
def test_an_order_that_keeps_the_rule_is_left_as_it_is(codes, cap):
    if most_in_a_window(codes, WINDOW) <= cap:
        assert diversified(codes, cap) == list(range(len(codes)))
        assert not breaks_rule(np.array([codes + [0]]), cap)[0]
    else:
        assert breaks_rule(np.array([codes]), cap)[0]


def test_a_limit_stops_the_repair_and_unknown_employers_are_never_held():
    assert diversified([5, 5, 5, 5, 1, 2], cap=2, limit=3) == [0, 1, 4]
    assert diversified([0] * 12, cap=1) == list(range(12))
    assert diversified([], cap=2) == []


def test_one_employer_with_thirty_percent_of_the_ads_is_spread_out():
    rng = np.random.default_rng(4)
    codes = np.where(rng.random(200) < 0.3, 99, rng.integers(1, 60, 200)).tolist()
    out = diversified(codes, cap=2)
    shown = [codes[p] for p in out]
    assert most_in_a_window(shown, WINDOW) <= 2 < most_in_a_window(codes, WINDOW)
    assert len(out) > 150 and out[:5] == sorted(out[:5])


def test_the_orders_of_a_regeneration_are_repaired_row_by_row():
    rng = np.random.default_rng(9)
    ads = 300
    codes = np.where(rng.random(ads) < 0.3, 42, rng.integers(1, 500, ads))
    codes[:20] = UNKNOWN
    orders = np.stack([np.stack([rng.permutation(ads)[:80] for _ in range(4)])
                       for _ in range(6)])                      # (cells, K, length)
    orders[2, 1, 70:] = -1                                       # a shorter row
    out, repaired = diversify_orders(orders, codes, cap=2)
    assert out.shape == orders.shape and 0 < repaired <= 24
    for c in range(6):
        for k in range(4):
            row = orders[c, k][orders[c, k] >= 0]
            kept = diversified(codes[row].tolist(), 2)
            left = sorted(set(range(len(row))) - set(kept))
            assert out[c, k][: len(row)].tolist() == row[kept + left].tolist()
            assert (out[c, k][len(row):] == -1).all()
    calm = np.arange(40).reshape(1, 1, 40)
    same, none = diversify_orders(calm, np.arange(1, 41), cap=2)
    assert none == 0 and same is calm
    assert diversify_orders(orders, codes, cap=0)[1] == 0
