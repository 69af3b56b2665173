"""The store a ``flask`` command works with, found and checked before it starts."""
from __future__ import annotations

import sys

import click
import redis
from flask import current_app

from config import load_settings
from config.local import DEMO_STATE, redacted, running_demo
from store import Store
from webapp.runtime import Runtime, runtime


def command_runtime(check: bool = True) -> Runtime:
    """The runtime a command works with. Without REDIS_URL, the Redis of a running
    ``make run`` (found in .run/demo.json, with the settings the demo runs with where the
    environment gives none), else the default, saying which on stderr; with
    ``check``, a store that cannot be reached ends the command with one line and exit 1."""
    rt = runtime()
    if "redis_url" not in rt.settings.model_fields_set:
        demo = running_demo(DEMO_STATE)
        found, demo_env = demo if demo is not None else (None, {})
        if found is not None and _answers(found):
            given = rt.settings.model_fields_set
            settings = load_settings(demo_env, redis_url=found,
                                     **{name: getattr(rt.settings, name) for name in given})
            rt = Runtime(settings)
            current_app.extensions["runtime"] = rt
            click.echo(f"REDIS_URL is unset: using the demo's Redis at {redacted(found)} "
                       f"(from {DEMO_STATE})", err=True)
        else:
            click.echo(f"REDIS_URL is unset: reading {redacted(rt.settings.redis_url)}, the "
                       f"default (no running make run found)", err=True)
    if check:
        try:
            rt.store.ping()
        except redis.RedisError as exc:
            click.echo(f"error: cannot reach Redis at {redacted(rt.settings.redis_url)}: "
                       f"{exc}", err=True)
            sys.exit(1)
    return rt


def _answers(url: str) -> bool:
    store = Store.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return store.ping()
    except redis.RedisError:
        return False
    finally:
        store.close()
