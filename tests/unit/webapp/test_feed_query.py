"""webapp.validation.feed_query: the feed's query read in plain Python where it is plain, and
by the FeedQuery model otherwise. On any query, generated from plain values, near misses and
garbage, it gives what the model gives: the same values, or the same error."""
from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from webapp.validation import ApiError, FeedQuery, _plain_feed_query, feed_query, parse_query

NUMBERS = st.one_of(
    st.floats(-200, 200, allow_nan=False).map(lambda v: f"{v:.6f}"),
    st.floats(-200, 200, allow_nan=False).map(repr),
    st.integers(-300, 300).map(str),
    st.sampled_from(["", " ", "1e1", "5E-1", "inf", "-inf", "nan", "1_0", " 52.5", "52.5 ",
                     "52.5\n", "+52.5", "0x10", "٥٢", "52,5", ".5", "5.", "-0", "-0.0",
                     "90.000000000001", "-90", "180", "180.0000001", "0.0000000000001",
                     "50", "50.0", "50.000000000001", "100", "101", "0", "007", "1.0"]),
    st.text(max_size=6))
IDS = st.one_of(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"), st.text(max_size=70),
                st.sampled_from(["u1\n", "a" * 64, "a" * 65, "ü", "user 1"]))
KEYS = st.sampled_from(["lat", "lon", "limit", "radius_km", "user_id", "_", "LAT"])


def outcome(fn, args):
    try:
        return fn(args).model_dump()
    except ApiError as err:
        return (err.status, err.code, err.message, err.field)


PLAIN = {"lat": "52.520000", "lon": "13.405000", "limit": "20", "radius_km": "2.5",
         "user_id": "u-42"}


@st.composite
def near_plain_queries(draw):
    """A plain query, some parameters left out, one or two given another value (a number,
    an identifier or garbage), sometimes one given twice or an unknown one added."""
    query = {k: v for k, v in PLAIN.items() if k in ("lat", "lon") or draw(st.booleans())}
    for key in draw(st.lists(st.sampled_from(list(PLAIN)), max_size=2)):
        query[key] = draw(NUMBERS if key != "user_id" else IDS)
    pairs = list(query.items())
    if draw(st.integers(0, 9)) == 0:
        pairs.append(draw(st.sampled_from(pairs)) if pairs else ("lat", "1"))
    if draw(st.booleans()):
        pairs.append((draw(KEYS), draw(NUMBERS)))
    return pairs


def agree(pairs):
    args = MultiDict(pairs)
    assert outcome(feed_query, args) == outcome(lambda a: parse_query(FeedQuery, a), args)


@given(near_plain_queries())
@example([("lat", "52.5"), ("lon", "13.4"), ("limit", "100")])
@example([("lat", "52.5"), ("lon", "13.4"), ("limit", "101")])
@example([("lat", "52.5"), ("lon", "13.4"), ("radius_km", "50.000000000001")])
@example([("lat", "52.5"), ("lon", "13.4"), ("lat", "52.5")])
@example([("lat", "52.5"), ("lon", "13.4"), ("user_id", "u1\n")])
@settings(max_examples=1500, deadline=None)
def test_the_plain_reading_answers_what_the_model_answers(pairs):
    agree(pairs)


@given(st.lists(st.tuples(KEYS, st.one_of(NUMBERS, IDS)), max_size=7))
@settings(max_examples=500, deadline=None)
def test_any_query_is_answered_as_the_model_answers_it(pairs):
    agree(pairs)


def test_the_common_queries_are_read_without_the_model():
    for query in ([("lat", "52.520000"), ("lon", "13.405000")],
                  [("lat", "-33.9"), ("lon", "151.2"), ("limit", "100"), ("radius_km", "2.5"),
                   ("user_id", "u-42"), ("_", "1712345678")]):
        plain = _plain_feed_query(MultiDict(query))
        assert plain is not None
        assert plain == parse_query(FeedQuery, MultiDict(query))
    assert _plain_feed_query(MultiDict([("lat", "1e1"), ("lon", "2")])) is None   # the model's
