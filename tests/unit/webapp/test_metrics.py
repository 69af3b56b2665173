"""GET /metrics: what each metric counts, read back through the exposition a scrape gets, and
labels of bounded cardinality (no ad, user, feed, cell or request id ever becomes a label).
Counters are process-wide, so each test compares a scrape after with one before."""
from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.learning.ingest import roll_in
from pipeline.learning.regenerate import run_regenerate
from pipeline.learning.rollup import run_rollup
from tests.support.api import put_ad

HERE = {"lat": "52.52", "lon": "13.405"}
ALLOWED_LABELS = {"route", "method", "status", "strategy", "cache", "type", "outcome", "error",
                  "stage", "job", "what", "limit", "le"}


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_template_method_and_status(client, admin):
    before = scrape(client)
    for i in range(3):
        put_ad(client, admin, f"ad-{i}", 52.52, 13.405)
    client.get("/v1/ads/ad-1")
    client.get("/v1/ads/never-seen")
    client.get("/no/such/path")
    client.open("/v1/feed", method="BREW")
    after = scrape(client)
    route = "/v1/ads/{ad_id}"
    for status, n in (("201", 3), ):
        assert value(after, "recommender_http_requests_total", route=route, method="PUT",
                     status=status) - value(before, "recommender_http_requests_total",
                                            route=route, method="PUT", status=status) == n
    for status in ("200", "404"):
        assert value(after, "recommender_http_requests_total", route=route, method="GET",
                     status=status) - value(before, "recommender_http_requests_total",
                                            route=route, method="GET", status=status) == 1
    assert value(after, "recommender_http_requests_total", route="unmatched", method="GET",
                 status="404") > value(before, "recommender_http_requests_total",
                                       route="unmatched", method="GET", status="404")
    assert value(after, "recommender_http_requests_total", route="unmatched", method="other",
                 status="405") - value(before, "recommender_http_requests_total",
                                       route="unmatched", method="other", status="405") == 1
    count = "recommender_http_request_duration_seconds_count"
    assert value(after, count, route=route) - value(before, count, route=route) == 5


def test_feeds_are_counted_by_strategy_and_cache_outcome_with_their_age(app, client, admin,
                                                                         fake_store, settings):
    put_ad(client, admin, "ad-1", 52.52, 13.405)
    before = scrape(client)
    first = client.get("/v1/feed", query_string=HERE).get_json()        # built on the miss
    app.extensions["runtime"].serving_log.flush()                        # the cell is active
    run_regenerate(fake_store, settings, time.time() - 30, app.extensions["runtime"].rng)
    app.extensions["runtime"].__dict__.pop("feed_cache", None)
    later = [client.get("/v1/feed", query_string=HERE).get_json() for _ in range(4)]
    after = scrape(client)
    assert first["cache"] == "miss" and {f["cache"] for f in later} == {"hit"}
    served = "recommender_feeds_served_total"
    by = {}
    for f in [first, *later]:
        by[(f["strategy"], f["cache"])] = by.get((f["strategy"], f["cache"]), 0) + 1
    for (strategy, cache), n in by.items():
        assert value(after, served, strategy=strategy, cache=cache) - \
            value(before, served, strategy=strategy, cache=cache) == n
    age = "recommender_feed_age_seconds"
    assert value(after, f"{age}_count") - value(before, f"{age}_count") == 5
    added = value(after, f"{age}_sum") - value(before, f"{age}_sum")
    assert 4 * 30 <= added < 4 * 30 + 30                # four feeds generated 30 s before
    assert value(after, f"{age}_bucket", le="15.0") - value(before, f"{age}_bucket", le="15.0") == 1


def test_events_are_counted_by_type_and_outcome(client, admin):
    put_ad(client, admin, "a", 52.52, 13.405)
    before = scrape(client)
    events = [{"event_id": "m-1", "ad_id": "a", "type": "view"},
              {"event_id": "m-2", "ad_id": "a", "type": "apply"},
              {"event_id": "m-3", "ad_id": "a", "type": "view", "position": 0},
              {"event_id": "m 4", "ad_id": "a", "type": "save"},
              {"event_id": "m-5", "ad_id": "a", "type": "purchase"},
              "not an event",
              {"event_id": "m-7", "ad_id": "no-such-ad", "type": "hide"}]
    assert client.post("/v1/events", json={"events": events}).status_code == 202
    assert client.post("/v1/events", json={"events": events[:2]}).status_code == 202  # again
    after = scrape(client)
    expected = {("view", "accepted"): 1, ("apply", "accepted"): 1, ("view", "rejected"): 1,
                ("save", "rejected"): 1, ("invalid", "rejected"): 2, ("hide", "rejected"): 1,
                ("view", "duplicate"): 1, ("apply", "duplicate"): 1}
    for (event_type, outcome), n in expected.items():
        assert value(after, "recommender_events_total", type=event_type, outcome=outcome) - \
            value(before, "recommender_events_total", type=event_type, outcome=outcome) == n


def test_the_store_figures_follow_the_pipeline(app, client, admin, fake_store, settings, sent):
    put_ad(client, admin, "ad-1", 52.52, 13.405)
    feed = client.get("/v1/feed", query_string=HERE).get_json()
    app.extensions["runtime"].serving_log.flush()
    events = [{"event_id": "s-1", "ad_id": "ad-1", "type": "impression", "position": 1,
               "feed_id": feed["feed_id"]},
              {"event_id": "s-2", "ad_id": "ad-1", "type": "apply", "feed_id": feed["feed_id"]}]
    client.post("/v1/events", json={"events": events})
    time.sleep(0.05)
    waiting = scrape(client)
    assert value(waiting, "recommender_store_up") == 1
    assert value(waiting, "recommender_pipeline_backlog", stage="inbox_batches") == 1
    assert value(waiting, "recommender_pipeline_lag_seconds") >= 0.05
    assert value(waiting, "recommender_job_runs_total", job="rollup") == 0

    now = time.time()
    for name, args, _ in sent:
        if name == "ingest.events":
            roll_in(fake_store, *args)                  # what the worker's ingest task does
    run_rollup(fake_store, settings, now)
    report = run_regenerate(fake_store, settings, now, app.extensions["runtime"].rng)
    done = scrape(client)
    assert value(done, "recommender_pipeline_lag_seconds") == 0
    assert value(done, "recommender_pipeline_backlog", stage="inbox_batches") == 0
    assert value(done, "recommender_job_runs_total", job="rollup") == 1
    assert value(done, "recommender_job_last_success_timestamp_seconds", job="rollup") == now
    assert value(done, "recommender_job_last_size", job="rollup", what="counted") == 2
    assert value(done, "recommender_job_last_size", job="regenerate", what="written") == 1
    assert value(done, "recommender_active_cells") == 1
    assert value(done, "recommender_live_ads") == 1
    chances = {s: value(done, "recommender_strategy_probability", strategy=s)
               for s in settings.feed_strategies}
    assert chances == pytest.approx(report["strategy_probability"])
    assert sum(chances.values()) == pytest.approx(1.0, abs=1e-3)
    strategy = feed["strategy"]
    for event_type in ("impression", "apply"):
        assert value(done, "recommender_strategy_events_total", strategy=strategy,
                     type=event_type) == 1
    assert value(done, "recommender_strategy_events_total", strategy=strategy, type="view") == 0


def test_a_scrape_answers_with_the_store_down_and_counts_the_errors(client, fake_store):
    fake_store.r.connection_pool.connection_kwargs["server"].connected = False
    before = scrape(client)
    assert value(before, "recommender_store_up") == 0
    assert client.get("/v1/ads/a-1").status_code == 503
    after = scrape(client)
    assert value(after, "recommender_redis_errors_total", error="ConnectionError") - \
        value(before, "recommender_redis_errors_total", error="ConnectionError") == 1


def test_labels_are_bounded_whatever_the_ids(app, client, admin, fake_store, settings):
    """A hundred ads, users, feeds, events and unknown paths add no series: no id, cell
    or path becomes a label value."""
    def traffic(n: int, tag: str) -> list[str]:
        ids = []
        for i in range(n):
            ad, user = f"{tag}ad{i}", f"{tag}user{i}"
            put_ad(client, admin, ad, 52.52 + i * 1e-3, 13.405)
            feed = client.get("/v1/feed", query_string={**HERE, "user_id": user}).get_json()
            client.get(f"/v1/recommend/{user}")
            client.get(f"/v1/stats/ads/{ad}")
            client.get(f"/{tag}path{i}")
            client.post("/v1/events", json={"events": [
                {"event_id": f"{tag}ev{i}", "ad_id": ad, "type": "view", "user_id": user,
                 "feed_id": feed["feed_id"]}]})
            ids += [ad, user, feed["feed_id"], feed["cell"], f"{tag}ev{i}", f"{tag}path{i}"]
        return ids

    traffic(3, "warm")
    run_rollup(fake_store, settings, time.time())
    few = scrape(client)
    ids = traffic(100, "x")
    run_rollup(fake_store, settings, time.time())
    many = {k: v for k, v in scrape(client).items() if k[0].startswith("recommender_")}
    few = {k: v for k, v in few.items() if k[0].startswith("recommender_")}
    series = {(name, tuple(k for k, _ in labels)) for name, labels in many}
    assert {name for name, labels in many} == {name for name, labels in few}
    assert {k for _, labels in many for k, _ in labels} <= ALLOWED_LABELS
    values = {v for _, labels in many for _, v in labels}
    assert not values & set(ids)
    assert not any(v.startswith(("x", "/x")) for v in values)
    grown = len(many) - len(few)
    assert grown <= 40, sorted(set(many) - set(few))[:20]   # new statuses or outcomes at most
    assert len(series) < 60


def test_a_bug_in_the_store_figures_fails_the_scrape_instead_of_blaming_redis(client,
                                                                             monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("finished_at")
    monkeypatch.setattr("webapp.metrics.pipeline_state", broken)
    response = client.get("/metrics")
    assert response.status_code == 500
    assert b"recommender_store_up 0" not in response.data


def test_a_sharded_run_is_exported_whole_and_by_shard(client, fake_store):
    assert value(scrape(client), "recommender_regen_run_shards", state="planned") == 0
    fake_store.begin_regen_run("5", 3, 30, time.time())
    fake_store.finish_shard("5", 2, {"duration_s": 2.25, "written": 10})
    found = scrape(client)
    assert value(found, "recommender_regen_run_shards", state="planned") == 3
    assert value(found, "recommender_regen_run_shards", state="done") == 1
    assert value(found, "recommender_regen_shard_duration_seconds", shard="2") == 2.25
