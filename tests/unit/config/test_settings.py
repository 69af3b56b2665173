import pytest
from pydantic import ValidationError

from config import SettingsError, load_settings


def test_defaults_are_documented_values():
    s = load_settings({})
    assert s.feed_radius_km == 5.0
    assert s.geohash_precision == 6
    assert s.feed_variants == 8
    assert s.max_events_per_post == 1000
    assert s.broker_url == s.redis_url


def test_values_come_from_the_environment_by_upper_case_name():
    s = load_settings({"REDIS_URL": "rediss://:pw@host:6380/0", "FEED_VARIANTS": "4",
                       "CELERY_BROKER_URL": "amqp://guest@localhost//"})
    assert s.redis_url.startswith("rediss://")
    assert s.feed_variants == 4
    assert s.broker_url == "amqp://guest@localhost//"


@pytest.mark.parametrize("name,value", [
    ("FEED_RADIUS_KM", "-1"), ("GEOHASH_PRECISION", "8"), ("FEED_VARIANTS", "lots"),
    ("REDIS_URL", "http://example"), ("MAX_EVENTS_PER_POST", "0"), ("PORT", "70000"),
    ("ADMIN_TOKEN", "short"), ("FLOWER_BASIC_AUTH", "nopassword"), ("PRIOR_MEAN", "1.5"),
    ("MAX_PER_EMPLOYER", "11"), ("FREQ_CAP", "-1"), ("FREQ_CAP", "11"),
    ("FREQ_WINDOW_S", "60"), ("FREQ_MAX_ADS", "5"), ("REGION_PRECISION", "-1"),
])
def test_a_bad_value_stops_the_start_naming_the_setting(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_visibility_timeout_must_cover_the_task_time_limit():
    with pytest.raises(SettingsError, match="VISIBILITY_TIMEOUT_S"):
        load_settings({"VISIBILITY_TIMEOUT_S": "100", "TASK_TIME_LIMIT_S": "200"})


def test_settings_are_frozen():
    s = load_settings({})
    with pytest.raises(ValidationError, match="frozen"):
        s.feed_radius_km = 1.0  # type: ignore[misc]


def test_config_is_the_only_module_reading_os_environ():
    from pathlib import Path
    root = Path(__file__).resolve().parents[3]
    offenders = []
    for package in ("webapp", "tasks", "store", "pipeline", "geo", "bandit", "obs"):
        for path in (root / package).rglob("*.py"):
            if "os.environ" in path.read_text() or "getenv" in path.read_text():
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


@pytest.mark.parametrize("env,name", [
    ({"EVENT_MAX_AGE_S": "90000", "DEDUPE_WINDOW_S": "86400"}, "DEDUPE_WINDOW_S"),
    ({"FEED_TTL_S": "60", "REGEN_INTERVAL_S": "60"}, "FEED_TTL_S"),
    ({"GEOHASH_PRECISION": "7", "FEED_RADIUS_KM": "30"}, "FEED_RADIUS_KM"),
    ({"GEOHASH_PRECISION": "5", "REGION_PRECISION": "5"}, "REGION_PRECISION"),
    ({"CELERY_BROKER_URL": "amqp://guest@localhost//", "TASK_TIME_LIMIT_S": "500",
      "VISIBILITY_TIMEOUT_S": "800"}, "BROKER_CONSUMER_TIMEOUT_S"),
])
def test_settings_that_contradict_each_other_are_refused(env, name):
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


def test_a_long_task_limit_is_refused_only_where_rabbitmq_would_cut_it_short():
    long = {"TASK_TIME_LIMIT_S": "500", "VISIBILITY_TIMEOUT_S": "800"}
    assert load_settings(long).task_time_limit_s == 500            # Redis: no consumer timeout
    rabbit = {**long, "CELERY_BROKER_URL": "amqp://guest@localhost//"}
    with pytest.raises(SettingsError, match="4 x TASK_TIME_LIMIT_S"):
        load_settings(rabbit)                         # 4 x 500 s > RabbitMQ's 30 minutes
    assert load_settings({**rabbit, "BROKER_CONSUMER_TIMEOUT_S": "2000"}).task_time_limit_s == 500
    assert load_settings({"CELERY_BROKER_URL": "amqp://guest@localhost//"}).task_time_limit_s == 300


def test_a_cluster_redis_url_needs_a_broker_of_its_own():
    """kombu has no Redis Cluster transport: the queues go to RabbitMQ or a plain Redis."""
    cluster = {"REDIS_URL": "redis+cluster://10.0.0.1:7000"}
    with pytest.raises(SettingsError, match="CELERY_BROKER_URL"):
        load_settings(cluster)
    with pytest.raises(SettingsError, match="CELERY_BROKER_URL"):
        load_settings({**cluster, "CELERY_BROKER_URL": "redis+cluster://10.0.0.1:7000"})
    for broker in ("amqp://guest@mq//", "redis://queues:6379/0"):
        settings = load_settings({**cluster, "CELERY_BROKER_URL": broker})
        assert settings.redis_is_cluster and settings.broker_url == broker
    assert load_settings({"REDIS_URL": "rediss+cluster://c:7000",
                          "CELERY_BROKER_URL": broker}).redis_is_cluster
    assert not load_settings({}).redis_is_cluster


@pytest.mark.parametrize("given,level", [("warning", "WARNING"), ("Info", "INFO"),
                                         ("CRITICAL", "CRITICAL"), (" debug ", "DEBUG")])
def test_log_level_is_taken_in_any_case(given, level):
    """gunicorn and Celery spell levels in lower case; one LOG_LEVEL serves all three."""
    assert load_settings({"LOG_LEVEL": given}).log_level == level


def test_an_unknown_log_level_is_refused_by_name():
    with pytest.raises(SettingsError, match="LOG_LEVEL"):
        load_settings({"LOG_LEVEL": "verbose"})


def test_no_repr_or_dump_of_the_settings_shows_a_secret():
    s = load_settings({"ADMIN_TOKEN": "admin-0123456789-secret",
                       "FLOWER_BASIC_AUTH": "ops:flower-secret",
                       "DASHBOARD_BASIC_AUTH": "owner:dash-secret"})
    for text in (repr(s), str(s), str(s.model_dump()), s.model_dump_json()):
        assert "secret" not in text.replace("SecretStr", ""), text
    assert s.admin_token.get_secret_value() == "admin-0123456789-secret"


@pytest.mark.parametrize("name,value", [("FLOWER_BASIC_AUTH", "a:b,c"),
                                        ("DASHBOARD_BASIC_AUTH", "no-colon-secret")])
def test_a_malformed_credential_is_refused_without_echoing_it(name, value):
    with pytest.raises(SettingsError, match=name) as refused:
        load_settings({name: value})
    assert value not in str(refused.value)


def test_a_rollup_batch_counted_in_events_by_an_older_version_is_refused_by_name():
    """ROLLUP_BATCH counts posts now; 5000 (the events of an older version's step) would be
    5000 posts in one atomic step."""
    assert load_settings({"ROLLUP_BATCH": "200"}).rollup_batch == 200
    with pytest.raises(SettingsError, match="ROLLUP_BATCH"):
        load_settings({"ROLLUP_BATCH": "5000"})


def test_the_default_region_stays_coarser_than_a_coarse_cell():
    """REGION_PRECISION's default (4) steps down under GEOHASH_PRECISION 4; set, it must be
    coarser than the cells."""
    assert load_settings({"GEOHASH_PRECISION": "4"}).region_precision == 3
    assert load_settings({}).region_precision == 4
    assert load_settings({"GEOHASH_PRECISION": "4", "REGION_PRECISION": "0"}).region_precision \
        == 0
