"""/dashboard and /docs in headless Chromium, on the real processes (web, worker, beat).

The dashboard is read three times as the data grows: empty, sparse (a few Berlin ads shown
once, no apply) and dense (feeds and events in Berlin, Paris and Tokyo), each at a desktop
and a phone size, with a full-page screenshot of each (UPDATE_SCREENSHOTS=1 also writes the
dense desktop one to docs/dashboard.png, the README's picture). At every step: no console
error, every chart drawn or saying in words why not, no text outside its chart, every top
ad's bar labelled, and each map panel zoomed to its own region's cells. The dashboard is
behind DASHBOARD_BASIC_AUTH, sent by the browser as a header.
"""
from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from devtools.demo import CITIES, demo_ads
from devtools.procs import Proc, start_beat, start_web, start_worker, wait_until
from tests.conftest import ADMIN_TOKEN, ROOT
from tests.support.tools import require_tool

OWNER = ("owner", "dash-pw-5e1f")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
DENSE_CITIES = ("berlin", "paris", "tokyo")
CHARTS = ("apply-rate", "view-rate", "probabilities", "jobs", "top-ads", "position-bias")

# What the page shows, read from its DOM: each chart drawn (points) or its words instead,
# every text of every plot whose box leaves its chart's box, the top ads' bars and tick
# labels, and each map panel's axis ranges (as Plotly laid them out).
PAGE = """
const within = (r, box) => r.left >= box.left - 1 && r.right <= box.right + 1 &&
                           r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
const charts = {};
for (const id of arguments[0]) {
  const el = document.getElementById(id);
  const traces = el.data || [];
  charts[id] = {
    points: traces.reduce((n, t) => n + (t.y || []).filter((v) => v !== null).length, 0),
    svg: !!el.querySelector(".main-svg"),
    words: (el.querySelector(".empty") || {}).textContent || null,
  };
}
const clipped = [];
for (const plot of document.querySelectorAll(".js-plotly-plot")) {
  const box = plot.getBoundingClientRect();
  for (const t of plot.querySelectorAll("text")) {
    const r = t.getBoundingClientRect();
    if (t.textContent.trim() && r.width > 0 && !within(r, box)) {
      clipped.push(`${plot.id}: "${t.textContent}"`);
    }
  }
}
const top = document.getElementById("top-ads");
const ticks = [...top.querySelectorAll(".yaxislayer-above .ytick text")]
  .map((t) => [t.textContent, t.getBoundingClientRect().top, t.getBoundingClientRect().bottom]);
const maps = [...document.querySelectorAll(".region-plot")].map((el) => ({
  id: el.id, heading: el.previousElementSibling.textContent,
  x: el._fullLayout.xaxis.range, y: el._fullLayout.yaxis.range,
  lon: el.data[0].x, lat: el.data[0].y,
}));
return {
  charts: charts, clipped: clipped, maps: maps,
  map_words: (document.querySelector("#map .empty") || {}).textContent || null,
  top_ads: { bars: top.data ? top.data[0].y.length : 0, ticks: ticks,
             bar_texts: [...top.querySelectorAll(".bartext")].map((t) => t.textContent),
             note: document.getElementById("top-ads-note").textContent },
  jobs: document.getElementById("jobs").data || null,
  jobs_axis: (document.querySelector("#jobs .xtitle") || {}).textContent || null,
  table: document.getElementById("pipeline").innerText,
  overflow: document.documentElement.scrollWidth - window.innerWidth,
};
"""


def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = require_tool("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--hide-scrollbars",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=require_tool("chromedriver")),
                            options=options)


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(driver, script: str, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out: {script}\n{console_errors(driver)}")


def full_page_png(driver, path: Path) -> Path:
    """The whole page, not only the window, as a PNG."""
    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


class Dashboard:
    """The dashboard in a browser at each of SIZES, and its data as the server sends it."""

    def __init__(self, driver, web: str, shots: Path) -> None:
        self.driver, self.web, self.shots = driver, web, shots
        token = base64.b64encode(":".join(OWNER).encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                               {"headers": {"Authorization": f"Basic {token}"}})

    def data(self) -> dict[str, Any]:
        return requests.get(f"{self.web}/dashboard/data", auth=OWNER, timeout=10).json()

    def wait(self, what: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        wait_until(lambda: ready(self.data()), 60, what, poll_s=0.5)
        time.sleep(1.5)   # another rollup and regeneration, so that the page matches
        return self.data()

    def read(self, phase: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The page at each size: what PAGE reads, after the checks every page passes."""
        for size, (width, height) in SIZES.items():
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1,
                "mobile": size == "phone"})
            self.driver.get(f"{self.web}/dashboard")
            wait_for(self.driver, "return document.body.dataset.ready === 'true'")
            page = self.driver.execute_script(PAGE, list(CHARTS))
            shot = full_page_png(self.driver, self.shots / f"dashboard-{phase}-{size}.png")
            assert shot.stat().st_size > 20_000
            where = f"{phase}, {size}"
            assert console_errors(self.driver) == [], where
            assert page["clipped"] == [], where
            assert page["overflow"] <= 0, where                # nothing wider than the screen
            for chart, drawn in page["charts"].items():
                assert (drawn["svg"] and drawn["points"] > 0) or drawn["words"], (where, chart)
            ticks = sorted(page["top_ads"]["ticks"], key=lambda t: t[1])
            assert len(ticks) == page["top_ads"]["bars"], where        # every bar labelled
            assert all(text.strip() for text, _, _ in ticks), where
            assert all(a[2] <= b[1] + 1 for a, b in pairwise(ticks)), where  # apart
            assert len(page["top_ads"]["bar_texts"]) == page["top_ads"]["bars"], where
            yield size, page


def put_ads(web: str, ads: list[dict[str, Any]]) -> None:
    with requests.Session() as s:
        for ad in ads:
            answer = s.put(f"{web}/v1/ads/{ad['ad_id']}", headers=ADMIN, timeout=10,
                           json={k: v for k, v in ad.items() if k != "ad_id"})
            assert answer.status_code in (200, 201), answer.text


def city_traffic(web: str, cities: tuple[str, ...], seconds: float, seed: int = 3) -> int:
    """Feeds asked at a few points around each city (each point its own cell), the
    impressions of every ad shown, views of some and applies of fewer, mostly of the ads
    shown first."""
    rng = np.random.default_rng(seed)
    offsets = [(0.0, 0.0), (0.02, 0.03), (-0.03, 0.01), (0.01, -0.04)]
    points = [(CITIES[c][0] + dlat, CITIES[c][1] + dlon) for c in cities for dlat, dlon in offsets]
    n, deadline = 0, time.monotonic() + seconds
    with requests.Session() as s:
        while time.monotonic() < deadline:
            lat, lon = points[n % len(points)]
            feed = s.get(f"{web}/v1/feed", params={"lat": lat, "lon": lon, "limit": 10},
                         timeout=10).json()
            events = []
            for ad in feed["ads"]:
                base = {"ad_id": ad["ad_id"], "feed_id": feed["feed_id"]}
                events.append({**base, "event_id": f"c{n}-{ad['position']}",
                               "type": "impression", "position": ad["position"]})
                if rng.random() < 0.3 / ad["position"] ** 0.5:
                    events.append({**base, "event_id": f"c{n}-{ad['position']}-v", "type": "view"})
                    if rng.random() < 0.3:
                        events.append({**base, "event_id": f"c{n}-{ad['position']}-a",
                                       "type": "apply"})
            assert s.post(f"{web}/v1/events", json={"events": events},
                          timeout=10).status_code == 202
            n += 1
    return n


@pytest.fixture
def stack(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Web, worker and beat (rollup and regeneration every second), the dashboard guarded."""
    env = {**env, "ROLLUP_INTERVAL_S": "1", "REGEN_INTERVAL_S": "1",
           "DASHBOARD_BASIC_AUTH": ":".join(OWNER)}
    procs: list[Proc] = [start_worker(env, tmp_path), start_beat(env, tmp_path)]
    try:
        web_proc, web = start_web(env, tmp_path)
        procs.append(web_proc)
        yield web
    finally:
        for proc in reversed(procs):
            proc.stop()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    require_tool("chromium")
    require_tool("chromedriver")
    driver = browser(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


def labels_of(ticks: list[list], titles: list[str]) -> bool:
    """Every tick label is one of the titles, whole or shortened with an ellipsis."""
    def shortened(label: str, title: str) -> bool:
        return label == title or (label.endswith("…") and title.startswith(label[:-1]))
    return all(any(shortened(label, t) for t in titles) for label, _, _ in ticks)


def in_region(page_map: dict[str, Any], cells: list[dict[str, Any]]) -> None:
    """The panel's axes hold every cell of its region, and span a city, not the world."""
    (x0, x1), (y0, y1) = page_map["x"], page_map["y"]
    assert x0 <= min(c["lon_min"] for c in cells) and max(c["lon_max"] for c in cells) <= x1
    assert y0 <= min(c["lat_min"] for c in cells) and max(c["lat_max"] for c in cells) <= y1
    assert x1 - x0 < 1.0 and y1 - y0 < 1.0, page_map


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_dashboard_reads_well_empty_sparse_and_dense(stack: str, chromium, tmp_path: Path):
    web = stack
    assert requests.get(f"{web}/dashboard", timeout=10).status_code == 401
    assert requests.get(f"{web}/dashboard/data", auth=(OWNER[0], "guess"),
                        timeout=10).status_code == 401
    shots = tmp_path / "screenshots"
    shots.mkdir()
    dashboard = Dashboard(chromium, web, shots)
    catalogue = [a for a in demo_ads(400, time.time(), seed=11, spread_km=1.5)
                 if a["ad_id"].split("-")[0] in DENSE_CITIES]

    for size, page in dashboard.read("empty"):
        assert "No ad has been shown yet" in page["charts"]["top-ads"]["words"], size
        assert page["map_words"] and page["maps"] == [], size
        assert "No impressions" in page["charts"]["apply-rate"]["words"], size

    berlin = [a for a in catalogue if a["ad_id"].startswith("berlin")][:3]
    put_ads(web, berlin)
    lat, lon = CITIES["berlin"][:2]
    feed = requests.get(f"{web}/v1/feed", params={"lat": lat, "lon": lon}, timeout=10).json()
    assert feed["ads"], feed
    requests.post(f"{web}/v1/events", timeout=10, json={"events": [
        {"event_id": f"s-{a['position']}", "ad_id": a["ad_id"], "type": "impression",
         "position": a["position"], "feed_id": feed["feed_id"]} for a in feed["ads"]]})
    data = dashboard.wait("the sparse data rolled up",
                          lambda d: len(d["top_ads"]) == len(feed["ads"]))
    for size, page in dashboard.read("sparse"):
        top = page["top_ads"]
        assert top["bars"] == len(feed["ads"]) and "No applies yet" in top["note"], size
        assert labels_of(top["ticks"], [a["title"] for a in berlin]), size
        assert page["charts"]["apply-rate"]["points"] > 0, size
        [berlin_map] = page["maps"]
        in_region(berlin_map, data["cells"])

    put_ads(web, catalogue)
    city_traffic(web, DENSE_CITIES, 8)
    data = dashboard.wait("the dense data rolled up", lambda d: len(d["top_ads"]) == 20 and
                          sum(a["applies"] for a in d["top_ads"]) > 0 and
                          len({c["region"] for c in d["cells"]}) == len(DENSE_CITIES))
    for size, page in dashboard.read("dense"):
        assert all(c["svg"] and c["points"] > 0 for c in page["charts"].values()), size
        top = page["top_ads"]
        assert top["bars"] == 20 and top["note"] == "", size
        assert labels_of(top["ticks"], [a["title"] for a in data["top_ads"]]), size
        assert len(page["maps"]) == len(DENSE_CITIES), size
        for region, page_map in enumerate(page["maps"]):
            cells = [c for c in data["cells"] if c["region"] == region]
            in_region(page_map, cells)
        centres = sorted((round(np.mean(m["lat"])), round(np.mean(m["lon"])))
                         for m in page["maps"])
        assert centres == sorted((round(CITIES[c][0]), round(CITIES[c][1]))
                                 for c in DENSE_CITIES), centres
        [jobs] = page["jobs"]                      # bar and text: the last run's duration
        unit = page["jobs_axis"].rsplit("(", 1)[1].rstrip(")")
        assert unit in ("ms", "s") and all(text.endswith(f" {unit}") for text in jobs["text"])
        assert list(jobs["y"]) == ["rollup", "regeneration"]
        assert "last rollup finished" in page["table"] and "never" not in page["table"]
        if size == "desktop" and os.environ.get("UPDATE_SCREENSHOTS") == "1":
            shutil.copy(shots / "dashboard-dense-desktop.png", ROOT / "docs" / "dashboard.png")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_docs_list_every_operation_in_a_real_browser(web: str, chromium):
    chromium.get(f"{web}/docs/")
    operations = wait_for(chromium, "const n = document.querySelectorAll('.opblock').length;"
                                    "return n > 10 ? n : 0;")
    document = requests.get(f"{web}/openapi.json", timeout=10).json()
    assert operations == sum(len(ops) for ops in document["paths"].values())
    assert console_errors(chromium) == []
