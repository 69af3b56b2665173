"""Command line reports: ``flask --app webapp report ctr``, the daily CTR of GET
/v1/stats/ctr as a table or as CSV."""
from __future__ import annotations

import csv
from datetime import timedelta
from typing import IO, Any

import click
from flask.cli import AppGroup

from bandit import STRATEGIES
from pipeline.reports.archived_ctr import archived_ctr
from pipeline.reports.ctr import (
    COUNTS,
    DEFAULT_DAYS,
    MAX_DAYS,
    RATES,
    DailyCtr,
    daily_ctr,
    utc_today,
)
from webapp.command_runtime import command_runtime

report_cli = AppGroup("report", help="Reports on what the rollup counted.")

TABLE_RATES = {"apply_rate": "apply rate", "view_rate": "view rate", "save_rate": "save rate",
               "apply_per_view": "applies/view"}   # column order, and headings


@report_cli.command("ctr")
@click.option("--days", type=click.IntRange(1, MAX_DAYS), default=DEFAULT_DAYS,
              show_default=True, help="How many UTC days, ending today.")
@click.option("--strategy", type=click.Choice(STRATEGIES),
              help="Only the events naming a feed this strategy served. [default: all]")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True),
              metavar="FILE", help="Also write the figures as CSV to FILE; '-' writes them to "
                                   "standard output instead of the table.")
def ctr_command(days: int, strategy: str | None, csv_path: str | None) -> None:
    """Daily CTR, as GET /v1/stats/ctr answers it.

    Impressions, views, saves and applies per UTC day and in total, with the apply, view
    and save rates per impression and applies per view, in %, each with its 95 % Wilson
    score interval ("-" where nothing was shown or viewed)."""
    rt = command_runtime()
    end = utc_today(rt.now())
    report = daily_ctr(rt.store, end - timedelta(days=days - 1), end, strategy,
                       archived=archived_ctr(rt.store, rt.settings))
    if csv_path is not None:
        with click.open_file(csv_path, "w", encoding="utf-8") as out:
            write_csv(report, out)
    if csv_path != "-":
        click.echo(ctr_table(report))


def ctr_table(report: DailyCtr) -> str:
    """The report as aligned text: a row per day, then the totals."""
    data = report.as_dict()
    rows = [("day", *COUNTS, *(f"{h} [95 % CI]" for h in TABLE_RATES.values()))]
    rows += [_table_row(day["day"] + ("*" if day["source"] == "archive" else ""), day)
             for day in data["days"]]
    rows.append(_table_row("total", data["totals"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = range(1, 1 + len(COUNTS))
    lines = [f"CTR per UTC day from {data['from']} to {data['to']}, "
             f"{'strategy ' + report.strategy if report.strategy else 'every strategy'}; "
             f"rates in % with 95 % Wilson score intervals"]
    lines += ["  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
              for row in rows]
    if report.archived_days:
        lines.append(f"* {report.archived_days} of {len(report.days)} days read from the "
                     f"archive (the days before the first one Redis holds)")
    return "\n".join(lines)


def _table_row(day: str, row: dict[str, Any]) -> tuple[str, ...]:
    return (day, *(str(row[c]) for c in COUNTS), *(_percent(row[r]) for r in TABLE_RATES))


def _percent(rate: dict[str, Any]) -> str:
    if rate["rate"] is None:
        return "-"
    return f"{100 * rate['rate']:.2f} [{100 * rate['low']:.2f}, {100 * rate['high']:.2f}]"


def write_csv(report: DailyCtr, out: IO[str]) -> None:
    """A header, a row per day, then a "total" row. Rates are fractions, each followed by
    its interval; a rate with a zero denominator is empty. ``source`` is redis, archive or
    empty (no events)."""
    data = report.as_dict()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", *COUNTS, *(f"{r}{part}" for r in RATES
                                       for part in ("", "_low", "_high")), "source"])
    for day, row in [*((d["day"], d) for d in data["days"]), ("total", data["totals"])]:
        writer.writerow([day, *(row[c] for c in COUNTS),
                         *(("" if v is None else v) for r in RATES
                           for v in (row[r]["rate"], row[r]["low"], row[r]["high"])),
                         row.get("source") or ""])
