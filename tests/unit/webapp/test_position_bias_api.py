"""GET /v1/stats/position-bias: the weights the rollup uses by position, where they come
from, and the learnt curve with its interval."""
from __future__ import annotations

import pytest
from flask import Flask

from bandit.position import PRIOR_CURVE
from config import load_settings
from store import Store
from tests.conftest import ADMIN_TOKEN, NOW
from webapp import create_app

CURVE = [1.0, 0.6, 0.45, 0.38, 0.33, 0.3, 0.28, 0.26, 0.25, 0.24, 0.2, 0.15]


def test_before_anything_is_learnt_the_prior_curve_is_used(client):
    body = client.get("/v1/stats/position-bias").get_json()
    assert body["source"] == "learnt" and body["exponent"] is None and body["learnt"] is None
    assert body["bins"][:3] == ["1", "2", "3"] and body["bins"][-2:] == ["11-20", "21+"]
    assert body["weights"] == pytest.approx(PRIOR_CURVE.tolist(), abs=1e-5)


def test_the_learnt_curve_is_what_the_rollup_uses(client, fake_store: Store):
    fake_store.write_position_curve({"bins": [], "curve": CURVE, "low": [c * 0.9 for c in CURVE],
                                     "high": [c * 1.1 for c in CURVE], "comparisons": 812.5,
                                     "updated_at": NOW})
    body = client.get("/v1/stats/position-bias").get_json()
    assert body["weights"] == pytest.approx(CURVE)
    learnt = body["learnt"]
    assert learnt["curve"] == pytest.approx(CURVE) and learnt["updated_at"] == NOW
    assert all(lo <= c <= hi
               for lo, c, hi in zip(learnt["low"], learnt["curve"], learnt["high"], strict=True))
    assert learnt["comparisons"] == 812.5


def test_the_exponent_setting_overrides_it(fake_store: Store):
    settings = load_settings({}, admin_token=ADMIN_TOKEN, position_bias_exponent=1.0)
    app: Flask = create_app(settings)
    app.extensions["runtime"].__dict__["store"] = fake_store     # cached_property slot
    fake_store.write_position_curve({"bins": [], "curve": CURVE, "low": CURVE, "high": CURVE,
                                     "comparisons": 1.0, "updated_at": NOW})
    body = app.test_client().get("/v1/stats/position-bias").get_json()
    assert body["source"] == "setting" and body["exponent"] == 1.0
    assert body["weights"] == pytest.approx([1 / p for p in (*range(1, 11), 11, 21)], abs=1e-5)
    assert body["learnt"]["curve"] == pytest.approx(CURVE)     # still learnt, for comparison
