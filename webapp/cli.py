"""Command line: ``flask --app webapp ads import FILE.jsonl`` and ``ads demo``."""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import orjson
from flask import Flask
from flask.cli import AppGroup

from pipeline.catalogue import upsert_ads
from pipeline.demo import demo_ads
from webapp.ads import ad_record
from webapp.runtime import runtime
from webapp.validation import AdLine, ApiError, parse

ads_cli = AppGroup("ads", help="The ad catalogue.")
CHUNK = 500


def init_app(app: Flask) -> None:
    app.cli.add_command(ads_cli)


def read_lines(path: Path, now: float, rejected: list[tuple[int, str]]) -> Iterator[tuple[int, object]]:
    """(bytes read so far, AdRecord) for each valid line; problems go to ``rejected``
    with their line numbers."""
    offset = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            offset += len(line)
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
                ad = parse(AdLine, data)
                yield offset, ad_record(ad.ad_id, ad, now)
            except orjson.JSONDecodeError as exc:
                rejected.append((number, f"invalid JSON: {exc}"))
            except ApiError as exc:
                rejected.append((number, exc.message))


@ads_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_ads(file: Path) -> None:
    """Create or replace the ads in FILE, one JSON object a line."""
    rt = runtime()
    now = rt.now()
    total_bytes = file.stat().st_size
    created = updated = 0
    rejected: list[tuple[int, str]] = []
    chunk: list = []
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
    click.echo(f"created {created}, updated {updated}, rejected {len(rejected)}")
    for number, reason in rejected[:100]:
        click.echo(f"  line {number}: {reason}")
    if len(rejected) > 100:
        click.echo(f"  ... and {len(rejected) - 100} more")
    if rejected:
        sys.exit(1 if not (created or updated) else 0)


def _last_wins(chunk: list) -> list:
    return list({r.ad_id: r for r in chunk}.values())


@ads_cli.command("demo")
@click.option("--count", default=3000, show_default=True, help="How many ads.")
@click.option("--seed", default=7, show_default=True, help="Random seed.")
def demo(count: int, seed: int) -> None:
    """Write a demo catalogue (JSON lines) to standard output."""
    now = time.time()
    out = sys.stdout.buffer
    for line in demo_ads(count, now, seed=seed):
        out.write(orjson.dumps(line) + b"\n")
