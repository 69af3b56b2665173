"""Command line: ``flask --app webapp ads import FILE.jsonl``, ``ads demo``,
``evaluate``, ``events replay`` and ``report ctr`` (webapp/report.py)."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from bandit import Estimate
from devtools.demo import demo_ads
from pipeline.archive import Archive
from pipeline.catalogue import AdRecord, reindex, upsert_ads
from pipeline.learning.examination import current
from pipeline.replay import archived_days, replay_events
from pipeline.reports.evaluate import Report, evaluate
from store import Store
from webapp.ads import ad_record
from webapp.command_runtime import command_runtime
from webapp.report import report_cli
from webapp.status import status_command
from webapp.validation import AdLine, ApiError, epoch_seconds, parse

ads_cli = AppGroup("ads", help="The ad catalogue.")
events_cli = AppGroup("events", help="The events: rebuild the counters from the archive.")
CHUNK = 1000           # ads per catalogue transaction
SHOWN_REJECTED = 100   # rejected lines an import lists


def init_app(app: Flask) -> None:
    app.cli.add_command(ads_cli)
    app.cli.add_command(events_cli)
    app.cli.add_command(evaluate_command)
    app.cli.add_command(report_cli)
    app.cli.add_command(status_command)


@dataclass
class Rejected:
    """The lines an import rejected: how many, and the first SHOWN_REJECTED with their line
    numbers (memory stays bounded however bad the file)."""

    count: int = 0
    first: list[tuple[int, str]] = field(default_factory=list)

    def append(self, line: tuple[int, str]) -> None:
        self.count += 1
        if len(self.first) < SHOWN_REJECTED:
            self.first.append(line)


def read_lines(path: Path, now: float, rejected: Rejected) -> Iterator[tuple[int, AdRecord]]:
    """(bytes read so far, AdRecord) for each valid line, read as a stream; problems go to
    ``rejected`` with their line numbers."""
    offset = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            offset += len(line)
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
                ad = parse(AdLine, data, strict=True)
                yield offset, ad_record(ad.ad_id, ad, now)
            except orjson.JSONDecodeError as exc:
                rejected.append((number, f"invalid JSON: {exc}"))
            except ApiError as exc:
                rejected.append((number, exc.message))


@ads_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_ads(file: Path) -> None:
    """Create or replace the ads in FILE, one JSON object a line."""
    rt = command_runtime()
    now = rt.now()
    total_bytes = file.stat().st_size
    created = updated = 0
    rejected = Rejected()
    chunk: list[AdRecord] = []
    with click.progressbar(length=total_bytes, label="importing", file=sys.stderr) as bar:
        for offset, record in read_lines(file, now, rejected):
            chunk.append(record)
            if len(chunk) >= CHUNK:
                c, u = upsert_ads(rt.store, rt.settings, _last_wins(chunk))
                created, updated = created + c, updated + u
                chunk = []
                bar.update(offset - bar.pos)
        if chunk:
            c, u = upsert_ads(rt.store, rt.settings, _last_wins(chunk))
            created, updated = created + c, updated + u
        bar.update(total_bytes - bar.pos)
    click.echo(f"created {created}, updated {updated}, rejected {rejected.count}")
    for number, reason in rejected.first:
        click.echo(f"  line {number}: {reason}")
    if rejected.count > len(rejected.first):
        click.echo(f"  ... and {rejected.count - len(rejected.first)} more")
    if rejected.count:
        sys.exit(1 if not (created or updated) else 0)


def _last_wins(chunk: list[AdRecord]) -> list[AdRecord]:
    return list({r.ad_id: r for r in chunk}.values())


@ads_cli.command("reindex")
def reindex_ads() -> None:
    """Rebuild every live ad's indexes from its record (after an upgrade changed them)."""
    rt = command_runtime()
    done, expired = reindex(rt.store, rt.settings, rt.now())
    click.echo(f"reindexed {done} ads ({expired} expired left out)")


@ads_cli.command("demo")
@click.option("--count", default=3000, show_default=True, help="How many ads.")
@click.option("--seed", default=7, show_default=True, help="Random seed.")
def demo(count: int, seed: int) -> None:
    """Write a demo catalogue (JSON lines) to standard output."""
    now = time.time()
    out = sys.stdout.buffer
    for line in demo_ads(count, now, seed=seed):
        out.write(orjson.dumps(line) + b"\n")


class EpochSeconds(click.ParamType):
    """A time as the HTTP API takes it: epoch seconds or ISO 8601 with a zone."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            return float(epoch_seconds(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@events_cli.command("replay")
@click.option("--from", "first_day", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="First archived day (YYYY-MM-DD, UTC).")
@click.option("--to", "last_day", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="Last archived day (YYYY-MM-DD, UTC), included.")
@click.option("--into", "into_url", metavar="REDIS_URL",
              help="Rebuild into this Redis, which must hold no counters yet.")
@click.option("--in-place", is_flag=True,
              help="Delete this store's counters and evidence, then rebuild them.")
@with_appcontext
def replay_command(first_day: datetime, last_day: datetime, into_url: str | None,
                   in_place: bool) -> None:
    """Rebuild the per-ad counters, the per-day and all-time CTR counters and each ad's
    decayed evidence from the archived events of the days given (ARCHIVE_URL), into another
    Redis or in place (pipeline/replay.py says what is rebuilt, and what is not)."""
    if (into_url is None) == (not in_place):
        raise click.UsageError("give one of --into REDIS_URL or --in-place")
    first, last = first_day.strftime("%Y-%m-%d"), last_day.strftime("%Y-%m-%d")
    if first > last:
        raise click.BadParameter("must not be after --to", param_hint="--from")
    rt = command_runtime()
    archive = Archive(rt.settings.archive_url)
    files = archived_days(archive, first, last)
    if not files:
        click.echo(f"no archived events from {first} to {last} in {rt.settings.archive_url}",
                   err=True)
        sys.exit(1)
    secret = rt.store.feed_id_secret()
    examination = current(rt.store, rt.settings)
    target = rt.store if into_url is None else Store.from_url(into_url,
                                                             rt.settings.event_partitions)
    try:
        if in_place:
            cleared = target.clear_counters()
            click.echo(f"in place: {cleared} counter keys deleted", err=True)
        elif target.holds_counters():
            click.echo("error: the Redis given by --into holds counters already: give an "
                       "empty one, or use --in-place", err=True)
            sys.exit(1)
        elif not target.adopt_feed_id_secret(secret):
            click.echo("error: the Redis given by --into signs feed ids with another secret "
                       "(secret:feed_ids): feeds would credit no strategy", err=True)
            sys.exit(1)
        done = replay_events(archive, target, rt.settings, first, last, secret, examination,
                             rt.now())
    finally:
        if not in_place:
            target.close()
    read = f"{done.files} file" + ("" if done.files == 1 else "s")
    click.echo(f"replayed {done.events:,} archived events from {read} ({first} to {last}): "
               f"{done.counted:,} counted")


@click.command("evaluate")
@click.option("--since", type=EpochSeconds(),
              help="Start of the served feeds (epoch seconds or ISO 8601 with a zone). "
                   "[default: --until minus one day]")
@click.option("--until", type=EpochSeconds(), help="End of the served feeds. [default: now]")
@click.option("--attribution-s", type=click.FloatRange(min=0),
              help="Credit a feed with the applies that reach the events stream within this "
                   "many seconds of its serving. [default: EVENT_MAX_AGE_S]")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@with_appcontext
def evaluate_command(since: float | None, until: float | None, attribution_s: float | None,
                     output: str) -> None:
    """Off-policy evaluation of the feed strategies over any range (the archive, then what
    Redis holds since): for each strategy in the served log, its logged value (the share of
    its feeds that led to an apply) and the IPS and self-normalised IPS estimates of that
    share had it served every feed, with 95 % intervals."""
    rt = command_runtime()
    until = rt.now() if until is None else until
    since = until - 86_400 if since is None else since
    if since >= until:
        raise click.BadParameter("must be before --until", param_hint="--since")
    if attribution_s is None:
        attribution_s = float(rt.settings.event_max_age_s)
    report = evaluate(rt.store, since, until, attribution_s, Archive(rt.settings.archive_url))
    if not report.feeds:
        click.echo(f"no served feeds from {_iso(since)} to {_iso(until)}: nothing to evaluate",
                   err=True)
        sys.exit(1)
    if output == "json":
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(report_table(report))


def report_table(report: Report) -> str:
    """The report as text: one row per strategy, then the totals. Values are applies per
    feed."""
    rows = [("strategy", "feeds", "logged value [95 % CI]", "IPS [95 % CI]", "SNIPS [95 % CI]")]
    rows += [(s.strategy, str(s.feeds), _interval(s.logged), _interval(s.ips),
              _interval(s.snips)) for s in report.strategies]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"served from {_iso(report.since)} to {_iso(report.until)}; applies credited "
             f"within {report.attribution_s:g} s of serving"]
    lines += ["  ".join(cell.rjust(w) if i == 1 else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
              for row in rows]
    lines.append(f"feeds used: {report.feeds} (applies credited: {report.applies}, "
                 f"log entries skipped: {report.skipped})")
    lines.append(f"logging policy: {_interval(report.policy)} of feeds led to an apply")
    return "\n".join(lines)


def _interval(e: Estimate) -> str:
    return f"{_number(e.value)} [{_number(e.low)}, {_number(e.high)}]"


def _number(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else str(x)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")
