"""webapp.admin: a served feed's provenance by its feed_id (the ads the employer rule moved
among it), behind the admin token; a bad feed_id is a 4xx naming it that writes nothing."""
from __future__ import annotations

import time

import pytest

import geo
from config import load_settings
from pipeline.learning.frequency import rule_of
from store import Showings
from tests.support import bad_input, feeds
from tests.support.api import app_with, error_of, put_ad
from tests.support.feeds import HERE, get_feed, ids_of

catalogue = feeds.catalogue       # the fixture: the ads around HERE
unchanged = bad_input.unchanged   # the fixture: the refused request wrote nothing


def test_a_feed_id_resolves_to_the_feed_that_was_served(client, admin, catalogue):
    feed = get_feed(client, limit=4)
    response = client.get(f"/v1/feeds/{feed['feed_id']}", headers=admin)
    assert response.status_code == 200, response.get_data(as_text=True)
    served = response.get_json()
    assert served["feed_id"] == feed["feed_id"]
    assert served["ads"] == ids_of(feed)
    assert served["cell"] == feed["cell"]
    assert served["strategy"] == feed["strategy"]
    assert float(served["propensity"]) == feed["propensity"]


def test_the_provenance_names_the_ads_the_employer_rule_moved(client, admin, fake_store):
    """Twelve ads of one employer (spelt three ways) and eight of others, around HERE, in a
    cell feed built without the rule (MAX_PER_EMPLOYER=0): served with it, the feed keeps at
    most two of that employer in any ten positions, and its provenance names the ads the
    rule moved down or left out."""
    spellings = ["Acme GmbH", "acme  gmbh", "ACME GmbH"]
    for i in range(20):
        put_ad(client, admin, f"ad-{i:02d}", HERE[0] + i * 1e-4, HERE[1],
               company=spellings[i % 3] if i < 12 else f"Other {i}")
    unruled = app_with(fake_store, max_per_employer=0).test_client()
    assert unruled.get("/v1/feed", query_string={"lat": HERE[0], "lon": HERE[1]}).status_code \
        == 200                                       # the cell's feed, built without the rule
    moved: list[str] = []
    for _ in range(5):
        feed = get_feed(client, limit=10)
        assert feed["cache"] == "hit"
        shown = ids_of(feed)
        assert len([a for a in shown if int(a[3:]) < 12]) <= 2 and len(shown) >= 8
        served = client.get(f"/v1/feeds/{feed['feed_id']}", headers=admin).get_json()
        assert served["ads"] == shown
        moved += served["employer_moved"]
        assert served["frequency_moved"] == []
        assert served["rules"] == {"MAX_PER_EMPLOYER": 2, "FREQ_CAP": 3,
                                   "FREQ_WINDOW_S": 604800, "FREQ_MAX_ADS": 100,
                                   "REGION_PRECISION": 4}
    assert moved and all(int(a[3:]) < 12 for a in moved)


def test_the_provenance_names_the_ads_the_frequency_cap_moved(client, admin, fake_store):
    """A user shown two ads three times without engaging: their recommendation puts them
    below the first screen, and its provenance names them and the rules in force."""
    for i in range(14):
        put_ad(client, admin, f"ad-{i:02d}", HERE[0] + i * 1e-4, HERE[1])
    everyone = get_feed(client, limit=14)
    ignored = ids_of(everyone)[:2]
    fake_store.record_showings({"u9": Showings({a: 3 for a in ignored}, ())}, time.time(),
                               rule_of(load_settings({})))
    feed = client.get("/v1/recommend/u9", query_string={"lat": HERE[0], "lon": HERE[1],
                                                        "limit": 14}).get_json()
    shown = ids_of(feed)
    assert len(shown) == 14 and not set(ignored) & set(shown[:10])
    served = client.get(f"/v1/feeds/{feed['feed_id']}", headers=admin).get_json()
    assert served["user_id"] == "u9" and set(served["frequency_moved"]) == set(ignored)
    assert served["rules"]["FREQ_CAP"] == 3


def test_a_feed_id_needs_the_admin_token(client, catalogue):
    feed = get_feed(client)
    error_of(client.get(f"/v1/feeds/{feed['feed_id']}"), 401)


@pytest.mark.parametrize("feed_id, status", [
    pytest.param("a%20b", 400, id="space"),
    pytest.param("%7B1-0%7D", 400, id="braces"),
    pytest.param("1" * 65, 400, id="65-chars"),
    pytest.param("abc", 404, id="not-a-stream-id"),
    pytest.param("1-0-0", 404, id="three-parts"),
    pytest.param("-1-0", 404, id="negative"),
])
def test_a_bad_feed_id_is_a_4xx_naming_feed_id(client, admin, unchanged, feed_id, status):
    error_of(client.get(f"/v1/feeds/{feed_id}", headers=admin), status, "feed_id")


@pytest.mark.parametrize("feed_id", [
    pytest.param("99999999999999999999999-0", id="ms-over-64-bits"),
    pytest.param("1-99999999999999999999", id="seq-over-64-bits"),
    pytest.param("18446744073709551616-0", id="ms-2-to-the-64"),
])
def test_a_stream_id_past_64_bits_is_a_404_not_a_500(client, admin, unchanged, feed_id):
    """Digits-dash-digits passes ``_is_stream_id`` but Redis cannot parse it as a stream id:
    no such feed can have been served."""
    error_of(client.get(f"/v1/feeds/{feed_id}", headers=admin), 404, "feed_id")


def test_a_feed_another_process_has_not_logged_yet_is_waited_for(app, client, admin,
                                                                 catalogue, fake_store):
    """Another web process logs the feeds it served within SERVED_FLUSH_S: a provenance
    asked for in between waits for it rather than answering 404."""
    import threading

    from pipeline.serving.feed import FeedRequest, ServingLog, serve_feed

    rt = app.extensions["runtime"]
    elsewhere = ServingLog(fake_store, rt.settings.served_maxlen, flush_s=None)
    feed = serve_feed(fake_store, rt.settings, FeedRequest(*feeds.HERE, 4, 5.0), rt.now(),
                      rt.rng, None, elsewhere, secret=rt.feed_id_secret)
    threading.Timer(0.5 * rt.settings.served_flush_s + 0.1, elsewhere.flush).start()
    response = client.get(f"/v1/feeds/{feed.feed_id}", headers=admin)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["ads"] == [a["ad_id"] for a in feed.as_dict()["ads"]]


def test_a_regeneration_the_web_process_runs_keeps_no_copy_of_the_catalogue(
        client, admin, catalogue, fake_store):
    fake_store.mark_active({geo.encode(*HERE, 6): time.time()})   # a cell the run rebuilds
    response = client.post("/v1/admin/regenerate?wait=true", headers=admin)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["written"] > 0
    assert fake_store._copy is None        # the workers keep one; a web process does not


def test_a_feed_trimmed_from_redis_is_read_from_the_archive(app, client, admin, catalogue,
                                                            fake_store):
    from pipeline.archive import run_archive
    from pipeline.learning.rollup import run_rollup

    feed = get_feed(client, limit=4)
    response = client.get(f"/v1/feeds/{feed['feed_id']}", headers=admin)   # logs it
    from_redis = response.get_json()
    rt = app.extensions["runtime"]
    settings = rt.settings.model_copy(update={"events_retention_s": 0})
    run_rollup(fake_store, settings, time.time())
    report = run_archive(fake_store, settings, time.time() + 1)
    assert report["served_rows"] == 1 and report["served_trimmed"] == 1
    assert fake_store.served_count() == 0
    response = client.get(f"/v1/feeds/{feed['feed_id']}", headers=admin)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == from_redis
