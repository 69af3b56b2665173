"""/dashboard and /docs in headless Chromium, on the real processes after a short run of
feeds and events: no console error, every chart drawn with data, Swagger UI listing every
operation. The dashboard is behind DASHBOARD_BASIC_AUTH, sent by the browser as a header.
A screenshot of the dashboard is saved (UPDATE_SCREENSHOTS=1 also writes docs/dashboard.png,
the README's picture)."""
from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest
import requests

from devtools.procs import Proc, start_beat, start_web, start_worker
from tests.conftest import ROOT
from tests.integration.traffic import drive_load
from tests.tools import require_tool

OWNER = ("owner", "dash-pw-5e1f")
CHARTS = ("apply-rate", "view-rate", "probabilities", "jobs", "map", "top-ads",
          "position-bias")
POINTS_DRAWN = """
return arguments[0].map((id) => {
  const el = document.getElementById(id);
  const traces = (el && el.data) || [];
  const points = traces.reduce((n, t) => n +
      (t.y || t.x || []).filter((v) => v !== null && v !== undefined).length, 0);
  return [id, points, !!(el && el.querySelector(".main-svg"))];
});
"""


def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = require_tool("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1500", f"--user-data-dir={tmp_path / 'chromium'}"):
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


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_dashboard_and_the_docs_draw_in_a_real_browser(env: dict[str, str], tmp_path: Path):
    require_tool("chromium")
    require_tool("chromedriver")
    env = {**env, "ROLLUP_INTERVAL_S": "1", "REGEN_INTERVAL_S": "1",
           "DASHBOARD_BASIC_AUTH": ":".join(OWNER)}
    procs: list[Proc] = [start_worker(env, tmp_path), start_beat(env, tmp_path)]
    driver = None
    try:
        web_proc, web = start_web(env, tmp_path)
        procs.append(web_proc)
        assert requests.get(f"{web}/dashboard", timeout=10).status_code == 401
        assert requests.get(f"{web}/dashboard/data", auth=(OWNER[0], "guess"),
                            timeout=10).status_code == 401
        drive_load(web, 8)
        time.sleep(3)                       # a rollup and a few regenerations after the load
        driver = browser(tmp_path)
        token = base64.b64encode(":".join(OWNER).encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                               {"headers": {"Authorization": f"Basic {token}"}})

        driver.get(f"{web}/dashboard")
        wait_for(driver, "return document.body.dataset.ready === 'true'")
        drawn = {id_: (points, svg) for id_, points, svg in
                 driver.execute_script(POINTS_DRAWN, list(CHARTS))}
        assert all(svg and points > 0 for points, svg in drawn.values()), drawn
        table = driver.execute_script("return document.getElementById('pipeline').innerText")
        assert "last rollup" in table and "never" not in table, table
        screenshot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 20_000
        if os.environ.get("UPDATE_SCREENSHOTS") == "1":
            shutil.copy(screenshot, ROOT / "docs" / "dashboard.png")
        assert console_errors(driver) == []

        driver.get(f"{web}/docs/")
        operations = wait_for(driver, "const n = document.querySelectorAll('.opblock').length;"
                                      "return n > 10 ? n : 0;")
        document = requests.get(f"{web}/openapi.json", timeout=10).json()
        assert operations == sum(len(ops) for ops in document["paths"].values())
        assert console_errors(driver) == []
    finally:
        if driver is not None:
            driver.quit()
        for proc in reversed(procs):
            proc.stop()
