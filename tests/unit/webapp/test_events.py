"""POST /v1/events: each invalid event is rejected alone, the valid ones are kept durably in the
inbox before the 202, one ingest task is sent per post, and a retried post is harmless."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from store import Keys
from tests.support import bad_input
from tests.support.api import error_of, put_ad
from tests.support.bad_input import EVENT

unchanged = bad_input.unchanged   # the fixture: the refused request wrote nothing


@pytest.fixture(autouse=True)
def catalogue(client, admin) -> None:
    """The ad the events name: the catalogue must hold an event's ad."""
    put_ad(client, admin, "ad-1", 52.52, 13.405)


def event(event_id: str, **fields) -> dict:
    return {"event_id": event_id, "ad_id": "ad-1", "type": "impression", **fields}


def post(client, *events) -> tuple[int, dict]:
    response = client.post("/v1/events", json={"events": list(events)})
    assert response.mimetype == "application/json"
    return response.status_code, response.get_json()


def inbox_events(fake_store) -> list[dict]:
    """The accepted events held in the inbox, over every batch, in order: a batch is a
    line of flags (1: accepted) and the posted events as columns."""
    events = []
    for batch_id in sorted(fake_store.overdue_batches(float("inf"))):
        kept, payload = fake_store.r.hget(Keys.inbox, batch_id).split(b"\n", 1)
        columns = orjson.loads(payload)
        del columns["at"]
        rows = [dict(zip(columns, row, strict=True))
                for row in zip(*columns.values(), strict=True)]
        events += [row for row, flag in zip(rows, kept.decode(), strict=True) if flag == "1"]
    return events


def inbox_event_ids(fake_store) -> list[str]:
    """The event ids held in the inbox, over every batch, in order."""
    return [e["id"] for e in inbox_events(fake_store)]


def test_a_valid_batch_is_accepted_and_kept_in_the_inbox_before_any_task_runs(
        client, fake_store, sent):
    status, body = post(client, event("e1"), event("e2", type="view"),
                        event("e3", type="save", user_id="u-1", feed_id="1700000000000-0",
                              position=3),
                        event("e4", type="apply", user_id="u-1"))
    assert status == 202
    assert body["accepted"] == 4 and body["duplicates"] == 0 and body["rejected"] == []
    # the recording publisher runs nothing: the batch is durable in Redis on its own
    assert fake_store.inbox_size() == 1
    assert inbox_event_ids(fake_store) == ["e1", "e2", "e3", "e4"]
    assert fake_store.r.exists(Keys.events) == 0


def test_one_ingest_task_per_post_names_the_inbox_batch(client, fake_store, sent):
    status, body = post(client, event("e1"), event("e2"), event("e3"))
    assert status == 202
    [batch_id] = fake_store.overdue_batches(float("inf"))
    assert sent == [("ingest.events", (batch_id,), {"queue": "ingest"})]
    assert body["task_id"] == "task-1"
    # the task's work is there to do: rolling the batch in moves all three events
    assert fake_store.roll_in(batch_id) == 3

    post(client, event("e4"))
    assert len(sent) == 2 and sent[1][0] == "ingest.events" and sent[1][1] != (batch_id,)


def test_a_mixed_batch_rejects_the_invalid_events_alone(client, fake_store, sent):
    status, body = post(
        client,
        event("ok-0"),                              # 0 valid
        event("bad-1", type="click"),               # 1 unknown type
        event("ok-2", type="apply"),                # 2 valid
        event("bad 3"),                             # 3 event_id with a space
        event("bad-4", colour="red"),               # 4 unknown field
        event("bad-5", position=0),                 # 5 position out of range
        "not an event",                             # 6 not an object
        {"event_id": "bad-7", "type": "view"},      # 7 ad_id missing
        event("ok-8", type="save"),                 # 8 valid
    )
    assert status == 202
    assert body["accepted"] == 3 and body["duplicates"] == 0
    rejected = {r["index"]: r for r in body["rejected"]}
    assert sorted(rejected) == [1, 3, 4, 5, 6, 7]
    expected_fields = {1: "type", 3: "event_id", 4: "colour", 5: "position", 7: "ad_id"}
    for index, field in expected_fields.items():
        assert rejected[index]["field"] == field, rejected[index]
    assert rejected[7]["code"] == "missing_parameter"
    assert rejected[4]["code"] == "unknown_field"
    for r in body["rejected"]:
        assert set(r) >= {"index", "code", "message", "field"}
        assert r["code"] and r["message"]
    assert inbox_event_ids(fake_store) == ["ok-0", "ok-2", "ok-8"]
    assert len(sent) == 1


@pytest.mark.parametrize("event_type", ["click", "IMPRESSION", "", None, 1])
def test_an_unknown_event_type_is_rejected_with_field_type(client, event_type):
    status, body = post(client, event("good"), event("bad", type=event_type))
    assert status == 202 and body["accepted"] == 1
    [rejected] = body["rejected"]
    assert rejected["index"] == 1 and rejected["field"] == "type"


@pytest.mark.parametrize("field, value", [
    ("event_id", "a b"), ("event_id", "e\n"), ("event_id", "e" * 65), ("event_id", ""),
    ("event_id", 42), ("ad_id", "{x}"), ("ad_id", "ad*"), ("ad_id", "é"),
    ("user_id", "u 1"), ("user_id", "u" * 65), ("feed_id", "1-0\n"), ("feed_id", "a/b"),
])
def test_a_bad_identifier_is_rejected_naming_it(client, fake_store, field, value):
    status, body = post(client, event("good"), {**event("bad"), field: value})
    assert status == 202 and body["accepted"] == 1
    [rejected] = body["rejected"]
    assert rejected["index"] == 1 and rejected["field"] == field
    assert inbox_event_ids(fake_store) == ["good"]


def iso(ts: float, offset_h: int = 0) -> str:
    zone = timezone(timedelta(hours=offset_h))
    return datetime.fromtimestamp(ts, tz=zone).isoformat()


@pytest.mark.parametrize("make_ts", [
    pytest.param(lambda now: now - 60, id="epoch-float"),
    pytest.param(lambda now: int(now) - 3600, id="epoch-int"),
    pytest.param(lambda now: str(int(now) - 60), id="epoch-numeric-string"),
    pytest.param(lambda now: iso(now - 60), id="iso-utc-offset"),
    pytest.param(lambda now: iso(now - 60, 2), id="iso-plus-two"),
    pytest.param(lambda now: iso(now - 60, -5), id="iso-minus-five"),
    pytest.param(lambda now: iso(now - 60).replace("+00:00", "Z"), id="iso-Z"),
    pytest.param(lambda now: now - 20 * 3600, id="twenty-hours-old"),
])
def test_ts_as_epoch_or_iso_with_a_zone_is_accepted(client, fake_store, make_ts):
    status, body = post(client, event("e1", ts=make_ts(time.time())))
    assert status == 202, body
    assert body["accepted"] == 1 and body["rejected"] == []


def test_an_iso_ts_is_kept_as_the_instant_it_names(client, fake_store):
    instant = float(int(time.time()) - 120)
    post(client, event("e1", ts=iso(instant, 2)), event("e2", ts=iso(instant, -5)))
    assert [e["ts"] for e in inbox_events(fake_store)] == [instant, instant]


@pytest.mark.parametrize("make_ts", [
    pytest.param(lambda now, max_age: now - max_age - 60, id="older-than-max-age"),
    pytest.param(lambda now, max_age: iso(now - max_age - 60), id="iso-older-than-max-age"),
    pytest.param(lambda now, max_age: now + 3600, id="an-hour-ahead"),
    pytest.param(lambda now, max_age: iso(now + 86_400, 1), id="iso-a-day-ahead"),
])
def test_ts_too_old_or_in_the_future_is_rejected_as_invalid_ts(client, settings, fake_store,
                                                                make_ts):
    ts = make_ts(time.time(), settings.event_max_age_s)
    status, body = post(client, event("good"), event("bad", ts=ts))
    assert status == 202 and body["accepted"] == 1
    assert body["rejected"] == [{"index": 1, "code": "invalid_ts", "field": "ts",
                                 "message": body["rejected"][0]["message"]}]
    assert body["rejected"][0]["message"]
    assert inbox_event_ids(fake_store) == ["good"]


@pytest.mark.parametrize("ts", [
    "2027-01-15T00:00:00", "yesterday", "NaN", "inf", True, -1, [1], {"s": 1},
])
def test_a_malformed_ts_is_rejected_with_field_ts(client, ts):
    status, body = post(client, event("good"), event("bad", ts=ts))
    assert status == 202 and body["accepted"] == 1
    [rejected] = body["rejected"]
    assert rejected["index"] == 1 and rejected["field"] == "ts"


def test_a_retried_post_is_all_duplicates_and_sends_no_task(client, fake_store, sent):
    batch = [event("e1"), event("e2", type="view"), event("e3", type="apply")]
    first_status, first = post(client, *batch)
    assert first_status == 202 and first["accepted"] == 3
    inbox_before = fake_store.r.hgetall(Keys.inbox)

    status, again = post(client, *batch)
    assert status == 202
    assert again == {"accepted": 0, "duplicates": 3, "rejected": [], "task_id": None}
    assert len(sent) == 1
    assert fake_store.r.hgetall(Keys.inbox) == inbox_before
    assert fake_store.inbox_size() == 1


def test_a_retry_after_the_batch_was_rolled_in_is_still_a_duplicate(client, fake_store, sent):
    post(client, event("e1"), event("e2"))
    [batch_id] = fake_store.overdue_batches(float("inf"))
    fake_store.roll_in(batch_id)
    status, again = post(client, event("e1"), event("e2"), event("e3"))
    assert status == 202 and again["accepted"] == 1 and again["duplicates"] == 2
    assert inbox_event_ids(fake_store) == ["e3"]


def test_duplicates_inside_one_post_are_reported(client, fake_store, sent):
    status, body = post(client, event("e1"), event("e2"), event("e1", type="view"),
                        event("e2"))
    assert status == 202
    assert body["accepted"] == 2 and body["duplicates"] == 2
    assert inbox_event_ids(fake_store) == ["e1", "e2"]
    assert len(sent) == 1


def test_nothing_usable_is_a_400_with_the_rejected_list(client, fake_store, keyspace, sent):
    before = keyspace()
    response = client.post("/v1/events", json={"events": [
        event("a b"), event("e2", type="click"), 7, event("e4", ts=time.time() + 86_400)]})
    error_of(response, 400, "events")
    rejected = response.get_json()["rejected"]
    assert [r["index"] for r in rejected] == [0, 1, 2, 3]
    assert [r["field"] for r in rejected] == ["event_id", "type", None, "ts"]
    assert rejected[3]["code"] == "invalid_ts"
    assert keyspace() == before
    assert sent == []


def test_exactly_max_events_per_post_is_accepted(client, settings, fake_store, sent):
    events = [event(f"e{i}") for i in range(settings.max_events_per_post)]
    status, body = post(client, *events)
    assert status == 202 and body["accepted"] == settings.max_events_per_post
    assert fake_store.inbox_size() == 1 and len(sent) == 1


def test_more_than_max_events_per_post_is_a_413_too_many_events(client, settings, unchanged):
    events = [{**EVENT, "event_id": f"e-{i}"} for i in range(settings.max_events_per_post + 1)]
    err = error_of(client.post("/v1/events", json={"events": events}), 413, "events")
    assert err["code"] == "too_many_events"


def test_a_charset_parameter_on_the_content_type_is_fine(client):
    response = client.post("/v1/events", data=orjson.dumps({"events": [event("e1")]}),
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 202


def test_rejections_are_listed_in_the_order_of_the_post_whatever_their_kind(client, settings):
    old = time.time() - settings.event_max_age_s - 60
    posted = [event("stale-0", ts=old), event("bad-1", type="click"), event("ok-2"),
              event("stale-3", ts=old), event("bad-4", ad_id="a b")]
    expected = [(0, "invalid_ts"), (1, "invalid_parameter"), (3, "invalid_ts"),
                (4, "invalid_parameter")]
    status, body = post(client, *posted)
    assert status == 202 and body["accepted"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == expected
    status, body = post(client, *posted[:2], *posted[3:])          # none usable: a 400
    assert status == 400 and body["error"]["code"] == "no_valid_events"
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (0, "invalid_ts"), (1, "invalid_parameter"), (2, "invalid_ts"), (3, "invalid_parameter")]


def test_an_event_for_an_ad_not_in_the_catalogue_is_rejected_alone(client, fake_store, sent):
    status, body = post(client, event("ok-0"), event("x-1", ad_id="ber-7"),
                        event("bad-2", type="click"), event("x-3", ad_id="ber-7", type="apply",
                                                            user_id="u1"),
                        event("ok-4", type="hide", user_id="u1"))
    assert status == 202
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert [(r["index"], r["code"], r["field"]) for r in body["rejected"]] == [
        (1, "unknown_ad", "ad_id"), (2, "invalid_parameter", "type"),
        (3, "unknown_ad", "ad_id")]
    assert "ber-7" in body["rejected"][0]["message"]
    assert inbox_event_ids(fake_store) == ["ok-0", "ok-4"]
    assert fake_store.excluded_ads("u1") == {"ad-1"}
    assert len(sent) == 1


def test_a_post_of_unknown_ads_only_is_a_400_and_writes_nothing(client, fake_store, keyspace,
                                                               sent):
    before = keyspace()
    response = client.post("/v1/events", json={"events": [
        event("x-0", ad_id="ber-7"), event("x-1", ad_id="ber-8", type="apply", user_id="u1"),
        event("bad-2", type="click")]})
    err = error_of(response, 400, "events")
    assert err["code"] == "no_valid_events"
    assert [(r["index"], r["code"]) for r in response.get_json()["rejected"]] == [
        (0, "unknown_ad"), (1, "unknown_ad"), (2, "invalid_parameter")]
    # nothing but the dedupe bucket's record of its set count, decided by its first post
    after = keyspace()
    (record,) = set(after) - set(before)
    assert record.startswith(fake_store.parts[0].dedupe(0)[:-1].encode())
    assert after[record][1][b"ids"] == b"0"
    assert {k: v for k, v in after.items() if k != record} == before
    assert sent == []


def test_nothing_is_counted_for_an_unknown_ad(client, app, admin, fake_store, sent):
    """The stats of an invented id stay a 404, like the ad itself, after the rollup."""
    post(client, event("e1"), event("x1", ad_id="ber-7", type="apply"))
    [batch_id] = fake_store.overdue_batches(float("inf"))
    fake_store.roll_in(batch_id)
    assert client.post("/v1/admin/rollup?wait=true", headers=admin).get_json()["counted"] == 1
    assert client.get("/v1/ads/ber-7").status_code == 404
    assert error_of(client.get("/v1/stats/ads/ber-7"), 404, "ad_id")["code"] == "not_found"
    assert client.get("/v1/stats/ads/ad-1").get_json()["counters"]["impressions"] == 1


def test_events_for_an_ad_deleted_after_its_impression(client, admin, fake_store, sent):
    """The rule: once deleted, an ad is unknown. Its events accepted before the delete are
    counted (a retry of them is a duplicate); those sent after it are rejected, even for
    an impression served before it. An ad that expired keeps its record: still known."""
    post(client, event("imp-1"))
    assert client.delete("/v1/ads/ad-1", headers=admin).status_code == 204
    status, body = post(client, event("imp-1"), event("apply-1", type="apply", user_id="u1"))
    assert status == 202 and body["accepted"] == 0 and body["duplicates"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "unknown_ad")]
    [batch_id] = fake_store.overdue_batches(float("inf"))
    fake_store.roll_in(batch_id)
    assert client.post("/v1/admin/rollup?wait=true", headers=admin).get_json()["counted"] == 1
    assert client.get("/v1/stats/ads/ad-1").get_json()["counters"]["impressions"] == 1

    put_ad(client, admin, "old-1", 52.52, 13.405, expires_at=time.time() + 1)
    fake_store.drop_expired(time.time() + 2)
    assert "old-1" not in fake_store.live_ad_ids()         # out of every feed, record kept
    status, body = post(client, event("imp-2", ad_id="old-1"))
    assert status == 202 and body["accepted"] == 1


def test_accepting_a_post_is_one_round_trip_whatever_it_holds(client, fake_store, sent,
                                                               round_trips):
    """Dedupe, the catalogue check, the inbox and the exclusions: one script call."""
    post(client, event("warm-up"))                    # the script is loaded once per server
    before = len(round_trips)
    status, body = post(client, event("e1"), event("x1", ad_id="ber-7"),
                        event("a1", type="apply", user_id="u1"), event("warm-up"))
    assert status == 202 and (body["accepted"], body["duplicates"]) == (2, 1)
    assert len(round_trips) - before == 1


def test_a_web_process_with_another_partition_count_refuses_posts(client, fake_store, sent,
                                                                  caplog):
    """Once a rollup recorded EVENT_PARTITIONS, a web process configured otherwise would
    put events where no worker counts them: it answers 503 store_misconfigured instead
    (its log, not the client, is told the count to set), and keeps nothing."""
    fake_store.r.set(fake_store.k.partitions, 3)          # a rollup with 3 recorded it
    before = set(fake_store.r.scan_iter())
    status, body = post(client, event("e1"))
    assert status == 503 and body["error"]["code"] == "store_misconfigured"
    assert "EVENT_PARTITIONS" not in body["error"]["message"]
    assert "set it back to 3" in caplog.text                       # the log names it
    assert set(fake_store.r.scan_iter()) == before and not sent


def test_a_retry_is_a_duplicate_within_the_dedupe_window_and_a_late_one_is_refused_by_its_ts(
        app, client, settings):
    """What docs/api.md promises of retries: within DEDUPE_WINDOW_S a retry is a duplicate;
    with a ts, a retry past it is refused (older than EVENT_MAX_AGE_S); without one, it
    takes its time of acceptance and is counted again."""
    rt = app.extensions["runtime"]
    start = time.time()
    stamped = event("r-1", ts=start)
    assert post(client, stamped, event("r-2"))[1]["accepted"] == 2
    rt.now = lambda: start + settings.dedupe_window_s - 60
    status, body = post(client, event("r-2"))
    assert (status, body["accepted"], body["duplicates"]) == (202, 0, 1)
    rt.now = lambda: start + 2 * settings.dedupe_window_s + 60      # both windows over
    status, body = post(client, stamped)
    assert status == 400 and body["rejected"][0]["code"] == "invalid_ts"
    status, body = post(client, event("r-2"))
    assert (status, body["accepted"]) == (202, 1)
