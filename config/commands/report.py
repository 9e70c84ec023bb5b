"""`parkwatch report --date YYYY-MM-DD [--config FILE] [--out DIR] [--format html,csv]`.

Reads one local day of the park (``[park] id``, ``timezone``) from the store named by ``[store] url``
(sqlite:// or influxdb1://) and writes the daily report: one self-contained HTML page and one CSV per
table (rules/report/daily.py), named ``{park}_{date}.html`` and ``{park}_{date}_{table}.csv``, into
--out (default ``report-{date}``). Prints the paths written. Exit 0; 1 if the store cannot be read;
2 for a bad configuration or argument.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from config.settings import load_settings, revealed
from ingest.errors import StoreError
from ingest.stores.readers import reader_from_url
from rules.report import daily_report, render_html, write_csv

FORMATS = ("html", "csv")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `report` subcommand."""
    parser = subparsers.add_parser(
        "report", help="write the daily report of one day (HTML page with plots, CSV tables)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--date", required=True, type=_day, metavar="YYYY-MM-DD", help="the day, in park time")
    parser.add_argument("--config", type=Path, help="TOML configuration (default: the embedded default)")
    parser.add_argument("--out", type=Path, help="output folder (default: report-YYYY-MM-DD)")
    parser.add_argument("--format", type=_formats, default=FORMATS, metavar="html,csv",
                        help="what to write (default: html,csv)")
    parser.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Compute and write the report; 1 if the store cannot be read."""
    settings = load_settings(args.config)
    store = settings.store
    reader = reader_from_url(settings.store_url, timeout_s=store.timeout_s, ca_file=store.ca_file,
                             username=store.username, password=revealed(store.password))
    try:
        report = daily_report(reader, settings.park.id, args.date, settings.park.tz)
    except StoreError as exc:
        print(f"parkwatch report: cannot read the store: {exc}", file=sys.stderr)
        return 1
    finally:
        reader.close()
    out: Path = args.out or Path(f"report-{args.date.isoformat()}")
    out.mkdir(parents=True, exist_ok=True)
    written = write_csv(report, out) if "csv" in args.format else []
    if "html" in args.format:
        page = out / f"{report.park}_{report.day.isoformat()}.html"
        page.write_text(render_html(report), encoding="utf-8")
        written.insert(0, page)
    for path in written:
        print(path)
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(FORMATS)}, comma-separated")
    return chosen
