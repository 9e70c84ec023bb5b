"""`parkwatch record FILE`: store MQTT traffic as JSON lines, for `parkwatch replay`.

    parkwatch record FILE [--config FILE] [--topic FILTER ...] [--duration S] [--count N]

Subscribes at QoS 1 to the topic filters (default: the device topics of the configured park, the ones the
service subscribes to) and writes one line per message: time received, topic, payload (text, or base64
with "encoding": "base64"), qos, retain. FILE is created once the broker has acknowledged the
subscription, and each line is flushed as it is written. Stops after --duration seconds, after --count
messages, or on SIGINT/SIGTERM; exit 0, or 1 if the broker cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from config.commands.simulate import duration_arg, stop_on_signals
from config.compose import mqtt_settings
from config.settings import load_settings
from ingest.topics import Topics
from simulators.publish import PublishError
from simulators.recording import Recorder

EXIT_UNREACHABLE = 1


def register(subparsers: Any) -> None:
    """Add the `record` subcommand."""
    parser = subparsers.add_parser("record", help="store MQTT traffic as JSON lines (for replay)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="the recording to write (replaced if it exists)")
    parser.add_argument("--config", type=Path, help="TOML configuration (default: the embedded default)")
    parser.add_argument("--topic", action="append", metavar="FILTER",
                        help="a topic filter, may be repeated (default: the park's device topics)")
    parser.add_argument("--duration", type=duration_arg, help="stop after this many seconds")
    parser.add_argument("--count", type=_positive, help="stop after this many messages")
    parser.set_defaults(func=cmd_record)


def cmd_record(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    mqtt = mqtt_settings(settings)
    filters = args.topic or list(Topics(settings.park.id).subscriptions())
    client_id = f"{mqtt.client_id}-record-{os.getpid()}"
    recorder = Recorder(replace(mqtt, client_id=client_id), filters, client_id=client_id)
    stop = threading.Event()
    try:
        recorder.start()
    except PublishError as exc:
        print(f"parkwatch: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"parkwatch: recording {' '.join(filters)} from {mqtt.url} to {args.file}; "
          "Ctrl-C stops", flush=True)
    n = 0
    try:
        with stop_on_signals(stop), args.file.open("w", encoding="utf-8") as out:
            for record in recorder.records(duration_s=args.duration, count=args.count, stop=stop):
                out.write(record.to_json() + "\n")
                out.flush()
                n += 1
    finally:
        recorder.stop()
    print(f"parkwatch: recorded {n} messages to {args.file}", flush=True)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value
