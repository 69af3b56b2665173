"""``flask --app webapp status``: the service's health on one screen, and an exit status
for cron, a container HEALTHCHECK or a deploy gate (0: healthy, 1: something failed)."""
from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import click
import orjson
from flask.cli import with_appcontext

from pipeline.reports.health import Check, Level, Observation, Thresholds, assess, observe, overall
from tasks.names import QUEUES
from webapp.command_runtime import command_runtime

PING_TIMEOUT_S = 1.0
COLOURS = {Level.OK: "green", Level.WARN: "yellow", Level.FAIL: "red"}


@click.command("status")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 on a warning too.")
@with_appcontext
def status_command(output: str, strict: bool) -> None:
    """Check Redis, the broker, the workers, the queues, the pipeline's lag, the last
    rollup and regeneration, active cells and live ads. Exits 1 when a check fails (with
    --strict, also when one warns), else 0."""
    rt = command_runtime(check=False)
    now = rt.now()
    limits = Thresholds.from_settings(rt.settings)
    seen = observe(rt.store, rt.celery, rt.settings, now, QUEUES, PING_TIMEOUT_S)
    checks = assess(seen, limits)
    if output == "json":
        click.echo(orjson.dumps(status_document(now, checks, seen, limits),
                                option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(status_screen(now, checks))
    sys.exit(exit_code(overall(checks), strict))


def exit_code(level: Level, strict: bool) -> int:
    return 1 if level == Level.FAIL or (strict and level == Level.WARN) else 0


def status_screen(now: float, checks: list[Check]) -> str:
    """One line per check: name, level, what was found, the limit (or the error)."""
    names = max(len(c.name) for c in checks)
    values = max(len(c.value) for c in checks)
    lines = [f"status at {_iso(now)}: {_level(overall(checks))}"]
    for c in checks:
        level = _level(c.level) + " " * (4 - len(c.level.name))
        lines.append(f"  {c.name.ljust(names)}  {level}  {c.value.ljust(values)}  "
                     f"{c.detail}".rstrip())
    return "\n".join(lines)


def status_document(now: float, checks: list[Check], seen: Observation,
                    limits: Thresholds) -> dict[str, Any]:
    """The same for machines, with the numbers behind it."""
    return {
        "status": overall(checks).name,
        "at": now,
        "checks": [{"name": c.name, "status": c.level.name, "value": c.value,
                    "detail": c.detail} for c in checks],
        "state": seen.state.as_dict() if seen.state else None,
        "broker": ({"queues": dict(seen.broker.queues), "workers": list(seen.broker.workers)}
                   if seen.broker else None),
        "errors": {"redis": seen.redis_error, "broker": seen.broker_error},
        "thresholds": asdict(limits),
    }


def _level(level: Level) -> str:
    return click.style(level.name, fg=COLOURS[level], bold=level != Level.OK)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")
