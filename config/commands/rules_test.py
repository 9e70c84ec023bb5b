"""`parkwatch rules test FILE [--config FILE] [--rules FILE]`: the alerts a recording or scenario would raise."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from config.compose import decode_settings, park_of
from config.settings import load_settings
from ingest.errors import ConfigError, ParkWatchError
from rules.config import load_rules
from rules.dryrun import Recorded, dry_run


def register(sub: Any) -> None:
    rules = sub.add_parser("rules", help="work with the rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    test = rules_sub.add_parser("test", help="run a recording (JSON lines or CSV) or a scenario (.toml) through "
                                             "the rules on a virtual clock and print the alerts it would raise")
    test.add_argument("file", type=Path)
    test.add_argument("--config", type=Path, default=None, help="service configuration (park, stations, rules)")
    test.add_argument("--rules", type=Path, default=None, help="rules file (default: [rules] file of the config)")
    test.add_argument("--station", default=None, help="station id for a CSV file without a station column")
    test.add_argument("--json", action="store_true", help="one JSON object per alert change")
    test.set_defaults(func=run)


def _records(args: argparse.Namespace, park: str, tz: Any) -> list[Recorded]:
    from simulators.recording import load_recording  # noqa: PLC0415 - only this command needs the simulators

    if args.file.suffix.lower() == ".toml":
        from simulators.scenario import load_scenario, scenario_records  # noqa: PLC0415

        return list(scenario_records(load_scenario(args.file), park=park))
    return list(load_recording(args.file, park=park, tz=tz, station=args.station))


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rules_path = args.rules or (Path(settings.rules.file) if settings.rules.file else None)
    if rules_path is None:
        raise ConfigError("rules.file", "no rules to test: give --rules FILE or [rules] file in --config")
    rules = load_rules(rules_path)
    try:
        records = sorted(_records(args, settings.park.id, settings.park.tz), key=lambda r: r.time)
    except (OSError, ParkWatchError, ValueError) as exc:
        print(f"parkwatch rules test: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    result = dry_run(records, decode_settings(settings), rules, park_of(settings), tick_s=settings.rules.tick_s)
    for s in result.signals:
        if args.json:
            print(json.dumps({"at": s.at.isoformat(), "rule": s.rule, "source": s.source, "state": s.state,
                              "severity": s.severity, "value": s.value, "threshold": s.threshold,
                              "message": s.message, "message_zh": s.message_zh}, ensure_ascii=False))
        else:
            print(f"{s.at.astimezone(settings.park.tz).isoformat()}  {s.state:<8} {s.severity:<8} "
                  f"{s.rule} {s.source}: {s.message}")
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(result.rejected.items())) or "none"
    print(f"# {result.messages} messages, {len(result.signals)} alert changes, {result.duplicates} duplicates, "
          f"{result.late} late, "
          f"rejected: {rejected}", file=sys.stderr)
    return 0
