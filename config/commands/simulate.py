"""`parkwatch simulate`: simulated stations and gates publishing to the configured broker.

    parkwatch simulate [--config FILE] [--scenario FILE] [--stations N] [--gates N] [--interval S]
                       [--speed X|max] [--duration S] [--format json|hj212] [--seed N] [--start ISO|now]
                       [--shared-client]

Without --scenario it simulates a quiet park of N stations (default 4) and N gates (default 4). --interval,
--duration and --seed override the scenario's; --format overrides its default format (a station that
names its own format or interval keeps it). --speed 1 (the default) is real time, 10 is ten times faster,
max (or 0) as fast as possible on a virtual clock. Start: --start, else the scenario's `start`, else on the
virtual clock 2026-06-01T00:00:00+08:00 (so the same seed gives the same bytes), else now (or, faster
than real time, now minus the duration, so no message lies in the future: the service refuses times more
than [ingest] max_clock_skew_s ahead of its clock).

In live mode each device has its own MQTT client (client id ``<client_id>-sim-<pid>-<device>``) whose will
is ``{"online": false}``; with max speed, or --shared-client, one client publishes for every device and the
simulation publishes the offline states itself. Exit 0 when done or stopped (SIGINT/SIGTERM), 1 if the
broker cannot be reached, 2 for a bad configuration or scenario.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from config.compose import mqtt_settings
from config.settings import load_settings
from ingest.errors import ConfigError
from ingest.mqtt import MqttSettings
from simulators.clock import make_clock, parse_duration, parse_speed
from simulators.publish import Connector, MqttConnector, MqttPublisher, PublishError, SharedConnector
from simulators.scenario import Scenario, Simulation, choose_start, default_scenario, load_scenario

EXIT_UNREACHABLE = 1


def register(subparsers: Any) -> None:
    """Add the `simulate` subcommand."""
    parser = subparsers.add_parser("simulate", help="publish simulated station and gate traffic to the broker",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="TOML configuration (default: the embedded default)")
    add_scenario_arguments(parser)
    parser.add_argument("--stations", type=count_arg, help="stations of the default park (default 4)")
    parser.add_argument("--gates", type=count_arg, help="gates of the default park (default 4)")
    parser.add_argument("--format", choices=("json", "hj212"), help="station payloads (default: the scenario's)")
    parser.add_argument("--start", help="ISO 8601 with offset (or in the park's time zone), or 'now'")
    parser.set_defaults(func=cmd_simulate)


def add_scenario_arguments(parser: argparse.ArgumentParser, *, speed: str = "1") -> None:
    """The arguments `simulate` and `demo` share."""
    parser.add_argument("--scenario", type=Path, help="a scenario file (see simulators/scenarios/)")
    parser.add_argument("--interval", type=interval_arg, help="seconds between a station's readings")
    parser.add_argument("--speed", type=speed_arg, default=parse_speed(speed),
                        help=f"1 real time, 10 ten times faster, max as fast as possible (default {speed})")
    parser.add_argument("--duration", type=duration_arg, help="how long, in simulated time (e.g. 3600, 2h)")
    parser.add_argument("--seed", type=int, help="the seed of every random stream")
    parser.add_argument("--shared-client", action="store_true",
                        help="one MQTT client for every device (the default with --speed max)")


def cmd_simulate(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    scenario = scenario_from_args(args)
    tz = settings.park.tz
    start = start_from_args(args.start, scenario, args.speed, tz)
    sim = Simulation(scenario, park=settings.park.id, tz=tz, start=start, fmt=args.format)
    stop = threading.Event()
    mqtt = mqtt_settings(settings)
    speed = "max" if args.speed is None else f"{args.speed:g}x"
    if args.speed is None and sim.end > datetime.now(UTC):
        print(f"parkwatch: warning: the run ends at {sim.end.isoformat()}, in the future: the service refuses "
              "readings from the future (give an earlier --start)", file=sys.stderr)
    window = f"{start.astimezone(tz).isoformat()} to {sim.end.astimezone(tz).isoformat()}"
    print(f"parkwatch: simulating {len(sim.stations)} stations and {len(sim.gates)} gates of park "
          f"'{settings.park.id}' ({scenario.name}), {window} at {speed}, to {mqtt.url}; "
          "Ctrl-C stops", flush=True)
    try:
        connector = connector_for(mqtt, shared=args.shared_client or args.speed is None)
        try:
            with stop_on_signals(stop):
                stats = sim.run(make_clock(args.speed, start, stop=stop), connector)
        finally:
            connector.close()
    except PublishError as exc:
        print(f"parkwatch: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(stats.by_kind.items()))
    print(f"parkwatch: {'stopped; ' if stats.stopped else ''}published {stats.published} messages ({kinds})",
          flush=True)
    return 0


# --- shared with demo ---------------------------------------------------------------------------------


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario file (or the default park of --stations/--gates), with the command line's overrides."""
    stations, gates = getattr(args, "stations", None), getattr(args, "gates", None)
    if args.scenario is not None:
        if stations is not None or gates is not None:
            raise ConfigError("--stations/--gates", "the scenario names its devices; leave them out with --scenario")
        scenario = load_scenario(args.scenario)
    else:
        scenario = default_scenario(stations=4 if stations is None else stations, gates=4 if gates is None else gates)
    updates = {key: getattr(args, key) for key in ("seed", "interval", "duration") if getattr(args, key) is not None}
    return scenario.model_copy(update=updates)


def start_from_args(text: str | None, scenario: Scenario, speed: float | None, tz: ZoneInfo,
                    now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime:
    """--start (ISO 8601, or 'now'), else :func:`simulators.scenario.choose_start`."""
    if text is None:
        return choose_start(scenario, speed, now())
    if text.strip().lower() == "now":
        return now().replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError("--start", f"{text!r} is not ISO 8601 (e.g. 2026-06-01T08:00:00+08:00) or 'now'") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def connector_for(mqtt: MqttSettings, *, shared: bool) -> Connector:
    """One client per device, or one shared client (connected here) for all."""
    prefix = f"{mqtt.client_id}-sim-{os.getpid()}"
    if not shared:
        return MqttConnector(mqtt, client_id_prefix=prefix)
    publisher = MqttPublisher(replace(mqtt, client_id=prefix), client_id=prefix)
    publisher.connect()
    return SharedConnector(publisher, on_close=publisher.close)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT/SIGTERM while inside (only in the main thread, where Python allows it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def speed_arg(text: str) -> float | None:
    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_arg(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return seconds


def interval_arg(text: str) -> float:
    seconds = duration_arg(text)
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 second")
    return seconds


def count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 to 10000")
    return value

