"""One structured line per request (and per task): JSON by default, key=value text with
LOG_FORMAT=text, carrying request_id and feed_id (task_id for event posts)."""
from __future__ import annotations

import logging

import orjson
import pytest

from config import load_settings
from obs.logs import JsonFormatter, TextFormatter, configure_logging
from pipeline.catalogue import AdRecord
from tests.conftest import ADMIN_TOKEN
from tests.unit.webapp.conftest import RecordingCelery
from webapp import create_app


@pytest.fixture(autouse=True)
def restore_root():
    """Our handler made afresh (writing to this test's captured stderr), then the root
    logger as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.handlers[:] = [h for h in handlers
                        if not isinstance(h.formatter, (JsonFormatter, TextFormatter))]
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def request_lines(fake_store, log_format: str, capsys) -> list[str]:
    app = create_app(load_settings({}, admin_token=ADMIN_TOKEN, log_format=log_format))
    app.extensions["runtime"].__dict__.update(store=fake_store, celery=RecordingCelery())
    client = app.test_client()
    fake_store.put_ads([AdRecord("a", 52.52, 13.4, "t", "c", "retail", "", 0.0, None).row()],
                       lambda old: [])          # the ad the event names
    capsys.readouterr()
    client.get("/v1/feed", query_string={"lat": "52.52", "lon": "13.4"},
               headers={"X-Request-ID": "req-42"})
    client.post("/v1/events", json={"events": [{"event_id": "e1", "ad_id": "a",
                                                "type": "view"}]})
    return [line for line in capsys.readouterr().err.splitlines() if "request" in line]


def test_json_lines_carry_the_ids(fake_store, capsys):
    lines = [orjson.loads(line) for line in request_lines(fake_store, "json", capsys)]
    feed, post = lines[-2], lines[-1]
    assert feed["request_id"] == "req-42" and feed["route"] == "/v1/feed"
    assert feed["feed_id"].count("-") == 3 and feed["status"] == 200
    assert post["task_id"] == "task-1" and len(post["request_id"]) == 32


def test_text_lines_are_key_value(fake_store, capsys):
    feed, post = request_lines(fake_store, "text", capsys)[-2:]
    assert " INFO webapp.request request " in feed
    assert "request_id=req-42" in feed and "route=/v1/feed" in feed and "feed_id=" in feed
    assert "task_id=task-1" in post
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(feed)


def test_configuring_twice_keeps_one_handler_in_the_last_format():
    configure_logging("INFO", "json")
    configure_logging("INFO", "text")
    ours = [h for h in logging.getLogger().handlers
            if isinstance(h.formatter, (JsonFormatter, TextFormatter))]
    assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter)


def test_a_bad_log_format_stops_the_start():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"})
