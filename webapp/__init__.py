"""The web front: feeds, the proximity API, the ad catalogue, events and admin calls.

``create_app`` is the table of contents; it connects nothing (Redis and the broker are
reached on the first request that needs them).
"""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    from webapp import (
        admin,
        ads,
        apidoc,
        cli,
        dashboard,
        errors,
        events,
        feeds,
        metrics,
        probes,
        requestlog,
        runtime,
        stats,
    )

    settings = settings or load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    if settings.trusted_proxies:
        # the client's address (rate limits, logs) as the proxies in front forwarded it
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    app.extensions["runtime"] = runtime.Runtime(settings)

    requestlog.init_app(app, settings)
    metrics.init_app(app)
    errors.init_app(app)
    app.register_blueprint(probes.bp)
    app.register_blueprint(feeds.bp)
    app.register_blueprint(events.bp)
    app.url_map.converters["ad_id"] = ads.AdIdConverter
    app.register_blueprint(ads.bp)
    app.register_blueprint(stats.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(dashboard.bp)
    apidoc.init_app(app)
    cli.init_app(app)
    return app
