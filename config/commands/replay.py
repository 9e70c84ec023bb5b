"""`parkwatch replay FILE`: publish a recording (or historical station data in CSV) again, in order.

    parkwatch replay FILE [--speed X|max] [--shift-to-now] [--config FILE] [--station ST]

FILE is a recording of `parkwatch record` (JSON lines) or, if it ends in .csv, station data: a `ts`
column, a `station` column or --station, one column per value, optional `<name>_flag` columns. Messages
go out in order, keeping the recorded gaps divided by --speed (default 1; max or 0: as fast as
possible). --shift-to-now moves the recorded times and the timestamps inside the payloads (ts, appointment
validity, HJ 212 DataTime and QN, re-framed with a correct CRC) by one offset, so the first message is
now. Waits for the broker to acknowledge everything; exit 0, 1 if the broker cannot be reached, 2 for a
bad file.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.commands.simulate import speed_arg, stop_on_signals
from config.compose import mqtt_settings
from config.settings import load_settings
from simulators.clock import make_clock, parse_speed
from simulators.publish import MqttPublisher, PublishError
from simulators.recording import RecordingError, load_recording, offset_to, replay, shift_records

EXIT_UNREACHABLE = 1
EXIT_BAD_FILE = 2


def register(subparsers: Any) -> None:
    """Add the `replay` subcommand."""
    parser = subparsers.add_parser("replay", help="publish recorded traffic (or station data in CSV) again",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a recording (JSON lines) or station data (.csv)")
    parser.add_argument("--config", type=Path, help="TOML configuration (default: the embedded default)")
    parser.add_argument("--speed", type=speed_arg, default=parse_speed("1"),
                        help="1 as recorded, 10 ten times faster, max (or 0) as fast as possible (default 1)")
    parser.add_argument("--shift-to-now", action="store_true",
                        help="move times and payload timestamps so that the first message is now")
    parser.add_argument("--station", help="the station of a CSV file without a station column")
    parser.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    tz = settings.park.tz
    try:
        records = load_recording(args.file, park=settings.park.id, tz=tz, station=args.station)
    except RecordingError as exc:
        print(f"parkwatch: {exc}", file=sys.stderr)
        return EXIT_BAD_FILE
    if not records:
        print(f"parkwatch: {args.file} holds nothing to replay", flush=True)
        return 0
    if args.shift_to_now:
        records = shift_records(records, offset_to(records, datetime.now(UTC)), tz)
    mqtt = mqtt_settings(settings)
    client_id = f"{mqtt.client_id}-replay-{os.getpid()}"
    publisher = MqttPublisher(replace(mqtt, client_id=client_id), client_id=client_id)
    stop = threading.Event()
    speed = "max" if args.speed is None else f"{args.speed:g}x"
    print(f"parkwatch: replaying {len(records)} messages of {args.file} at {speed} to {mqtt.url}; "
          "Ctrl-C stops", flush=True)
    try:
        publisher.connect()
        try:
            with stop_on_signals(stop):
                sent = replay(records, publisher, make_clock(args.speed, records[0].time, stop=stop))
        finally:
            publisher.close()
    except PublishError as exc:
        print(f"parkwatch: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"parkwatch: replayed {sent} of {len(records)} messages, all acknowledged", flush=True)
    return 0
