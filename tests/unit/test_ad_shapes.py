"""An ad has one shape per layer, named for the layer: on the wire ``webapp.validation.AdIn``
(the import line's ``AdLine`` adds its id; the answer ``webapp.apidoc.Ad`` is derived from it),
in the pipeline ``pipeline.catalogue.AdRecord``, in the store ``store.AdRow``; and it changes
shape in one place, ``AdRecord``. The round trips here show no conversion loses anything;
tests/unit/webapp/test_ads.py shows the API answers what they give."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.catalogue import AdRecord, category_code
from pipeline.serving.cellfeed import ad_card
from webapp.apidoc import Ad
from webapp.validation import AdIn, AdLine

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("geo", "bandit", "config", "store", "pipeline", "webapp", "tasks", "obs",
            "devtools", "bench")
AD_FIELDS = {f for f in AdRecord.__dataclass_fields__ if f != "ad_id"}
SHAPES = {"webapp/validation.py": ["AdIn"], "pipeline/catalogue.py": ["AdRecord"],
          "store/rows.py": ["AdRow"]}
CONVERTER = "pipeline/catalogue.py"
NOW = 1_700_000_000.0
BODY = {"lat": 52.52, "lon": 13.405, "title": "  Line Cook ", "company": "Open Kitchen",
        "category": "hospitality", "description": "Evenings.",
        "created_at": "2023-11-14T00:00:00Z", "expires_at": NOW + 86_400}


def sources() -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text())
            for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def declared(node: ast.ClassDef) -> set[str]:
    return {s.target.id for s in node.body
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def ad_shapes(tree: ast.Module) -> list[str]:
    """Classes that describe one ad: named Ad... and saying where it is (lat, lon), or
    declaring most of an ad's fields whatever their name."""
    return [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
            and ({"lat", "lon"} <= declared(n) and n.name.startswith("Ad")
                 or len(declared(n) & AD_FIELDS) > len(AD_FIELDS) // 2)]


def constructions(tree: ast.Module) -> list[int]:
    """Lines that call ``AdRecord(...)`` or ``AdRow(...)``."""
    return sorted(n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and (getattr(n.func, "id", None) or getattr(n.func, "attr", None))
                  in ("AdRecord", "AdRow"))


def test_an_ad_has_one_shape_per_layer():
    found = {path: names for path, tree in sources().items() if (names := ad_shapes(tree))}
    assert found == SHAPES


def test_only_the_record_builds_records_and_rows():
    offenders = {path: lines for path, tree in sources().items()
                 if path != CONVERTER
                 and (lines := constructions(tree))}
    assert offenders == {}


def test_each_check_finds_what_it_looks_for():
    code = ast.parse("class AdCopy:\n    lat: float\n    lon: float\n"
                     "class Listing:\n    title: str\n    company: str\n    category: str\n"
                     "    lat: float\n    lon: float\n"
                     "class FeedQuery:\n    lat: float\n    lon: float\n"
                     "r = AdRecord('a', 1.0, 2.0, 't', 'c', 'x', '', 0.0, None)\n"
                     "w = catalogue.AdRow('a', {}, 1.0, 2.0, None, 0.0, 0, b'')\n"
                     "x = AdRecord.from_wire('a', {}, 0.0)\n")
    assert ad_shapes(code) == ["AdCopy", "Listing"]
    assert constructions(code) == [13, 14]


def test_the_answer_is_the_body_answered():
    assert list(Ad.model_fields) == ["ad_id", *AdIn.model_fields, "live"]
    assert list(AdLine.model_fields) == [*AdIn.model_fields, "ad_id"]
    assert set(AdIn.model_fields) == AD_FIELDS


def test_a_put_body_becomes_a_record_then_a_row_and_reads_back():
    record = AdRecord.from_wire("ad-1", AdIn.model_validate(BODY).model_dump(), NOW)
    assert record == AdRecord("ad-1", 52.52, 13.405, "Line Cook", "Open Kitchen",
                              "hospitality", "Evenings.", 1_699_920_000.0, NOW + 86_400)
    row = record.row()
    assert (row.ad_id, row.lat, row.lon, row.created_at, row.expires_at) == (
        "ad-1", 52.52, 13.405, 1_699_920_000.0, NOW + 86_400)
    assert row.category_code == category_code("hospitality")
    assert row.card == ad_card("Line Cook", "Open Kitchen")
    assert row.fields == record.fields()
    assert AdRecord.from_fields(row.ad_id, row.fields) == record


def test_an_import_line_becomes_the_record_its_put_would():
    line = AdLine.model_validate({**BODY, "ad_id": "ad-1"})
    put = AdIn.model_validate(BODY)
    assert (AdRecord.from_wire(line.ad_id, line.model_dump(), NOW)
            == AdRecord.from_wire("ad-1", put.model_dump(), NOW))


def test_what_the_body_leaves_out_reads_as_the_wire_model_defaults_it():
    least = {"lat": 1.0, "lon": 2.0, "title": "t", "company": "c"}
    validated = AdRecord.from_wire("a", AdIn.model_validate(least).model_dump(), NOW)
    assert AdRecord.from_wire("a", least, NOW) == validated
    assert (validated.category, validated.description) == ("other", "")
    assert (validated.created_at, validated.expires_at) == (NOW, None)


@pytest.mark.parametrize("expires_at", [NOW - 1, NOW], ids=["before", "at"])
def test_an_ad_cannot_expire_before_it_is_created(expires_at):
    with pytest.raises(ValueError, match="expires_at"):
        AdRecord.from_wire("a", {**BODY, "created_at": NOW, "expires_at": expires_at}, NOW)
    with pytest.raises(ValueError, match="expires_at"):
        AdRecord.from_wire("a", {**BODY, "created_at": None, "expires_at": expires_at}, NOW)


def test_stored_fields_read_back_as_the_record_and_answer_as_the_api_model():
    record = AdRecord("ad-1", -33.9, 151.2, "Bäcker", "Co", "retail", "", 12.5, NOW)
    answer = AdRecord.from_fields("ad-1", record.fields()).wire(NOW - 1)
    assert answer == {"ad_id": "ad-1", "lat": -33.9, "lon": 151.2, "title": "Bäcker",
                      "company": "Co", "category": "retail", "description": "", "created_at": 12.5,
                      "expires_at": NOW, "live": True}
    assert list(answer) == list(Ad.model_fields)
    assert Ad.model_validate(answer).model_dump() == answer
    assert record.wire(NOW)["live"] is False
    assert AdRecord.from_fields("ad-1", record.fields()).fields() == record.fields()


def test_a_record_an_older_version_wrote_reads_with_empty_texts():
    record = AdRecord.from_fields("old", {"lat": "1.5", "lon": "-2.0"})
    assert record == AdRecord("old", 1.5, -2.0, "", "", "", "", 0.0, None)
    assert record.live(NOW)
