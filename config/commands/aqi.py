"""`parkwatch aqi [--edition 2012|2026] [--daily] NAME=VALUE ...` (contract §7).

Prints, as JSON on stdout, the HJ 633 report of the concentrations given: the IAQI of each pollutant, the
AQI, its level, category and colour, and the primary and exceeding pollutants. Hourly report (实时报)
unless --daily. The default edition is the one in force today in the default park time zone
(Asia/Shanghai). A bad NAME or VALUE exits 2 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date, datetime
from zoneinfo import ZoneInfo

from rules.aqi import DAILY_INPUTS, EDITIONS, HOURLY_INPUTS, daily_aqi, edition_in_force, hourly_aqi

EXIT_USAGE = 2
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")  # contract §2: the default park time zone


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `aqi` subcommand."""
    parser = subparsers.add_parser(
        "aqi",
        help="print the HJ 633 IAQI, AQI, category and primary pollutants of the concentrations given",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"hourly names: {', '.join(HOURLY_INPUTS)}\ndaily names (--daily): {', '.join(DAILY_INPUTS)}\n"
        "units: µg/m³, co mg/m³",
    )
    parser.add_argument("--edition", choices=EDITIONS, help="HJ 633 edition (default: the one in force today)")
    parser.add_argument("--daily", action="store_true", help="daily report (日报) instead of the hourly one")
    parser.add_argument("values", nargs="+", metavar="NAME=VALUE", help="a concentration, e.g. pm25=75")
    parser.set_defaults(func=cmd_aqi)


def cmd_aqi(args: argparse.Namespace) -> int:
    """Compute and print the report; 2 on a bad NAME or VALUE."""
    edition = args.edition or edition_in_force(today())
    try:
        values = parse_values(args.values)
        result = (daily_aqi if args.daily else hourly_aqi)(values, edition)
    except ValueError as exc:
        print(f"parkwatch aqi: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result.to_json_dict(), ensure_ascii=False, indent=2))
    return 0


def parse_values(pairs: list[str]) -> dict[str, float]:
    """NAME=VALUE arguments as a mapping; a malformed pair, a repeated name or a bad number is a ValueError."""
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{pair!r} is not NAME=VALUE")
        if name in values:
            raise ValueError(f"{name} is given twice")
        values[name] = _number(name, text.strip())
    return values


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: {text!r} is not a finite, non-negative concentration")
    return value


def today() -> date:
    """Today's date in the default park time zone."""
    return datetime.now(DEFAULT_TZ).date()
