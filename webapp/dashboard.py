"""GET /dashboard: the feed owners' page. Its charts are drawn in the browser with Plotly,
whose script the app serves from the plotly package (no CDN: it works on a closed network)."""
from __future__ import annotations

from pathlib import Path

import plotly
from flask import Blueprint, Response, render_template, send_file

from pipeline.reports.dashboard_data import dashboard_data
from webapp.apidoc import DashboardData, documented
from webapp.auth import require_dashboard
from webapp.errors import json_response
from webapp.runtime import runtime

bp = Blueprint("dashboard", __name__, template_folder="templates")   # its css and js: /static

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
DASHBOARD_ERRORS = {401: ("dashboard_disabled", "unauthorized")}


@bp.get("/dashboard")
@documented("The feed owners' dashboard (HTML; basic auth DASHBOARD_BASIC_AUTH)", "dashboard",
            response={"type": "string"}, media_type="text/html", uses_store=False,
            errors=DASHBOARD_ERRORS)
@require_dashboard
def page() -> str:
    return render_template("dashboard.html")


@bp.get("/dashboard/data")
@documented("The dashboard's figures", "dashboard", response=DashboardData,
            errors=DASHBOARD_ERRORS)
@require_dashboard
def data() -> Response:
    rt = runtime()
    return json_response(dashboard_data(rt.store, rt.settings, rt.now()))


@bp.get("/dashboard/plotly.min.js")
@documented("Plotly, the charting library the dashboard draws with", "dashboard",
            response={"type": "string"}, media_type="text/javascript", uses_store=False)
def plotly_js() -> Response:
    return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=86_400)
