"""`parkwatch demo`: the embedded default service plus simulated stations and gates, in one process.

    parkwatch demo [--scenario FILE] [--speed X|max] [--duration S] [--interval S] [--seed N]
                   [--data-dir DIR] [--rules FILE] [--every S] [--shared-client]

Starts what `parkwatch run` starts with no configuration (the embedded broker on 127.0.0.1:1884, SQLite),
with its data in a temporary directory (removed at exit) unless --data-dir, and the rules of --rules
(default: config/rules.example.toml). Then it plays a scenario (default: simulators/scenarios/demo.toml)
at --speed (default 60: a simulated hour per real minute, starting a duration ago so that no reading lies
in the future) and prints, every --every seconds, what is stored (readings per station, gate events),
the dead letters by reason, and every alert change the service publishes as it happens. Stops when the
scenario ends or on Ctrl-C, waits until everything received is stored, and prints the final counters.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from config.commands.simulate import (
    add_scenario_arguments,
    connector_for,
    duration_arg,
    start_from_args,
    stop_on_signals,
)
from config.compose import Service, build, mqtt_settings
from config.settings import Settings, load_settings
from ingest.errors import ParkWatchError
from simulators.clock import SimClock, make_clock
from simulators.publish import Connector, PublishError
from simulators.recording import Recorder
from simulators.scenario import SCENARIO_DIR, RunStats, Scenario, Simulation, default_scenario, load_scenario

EXIT_FAILED = 1
DEFAULT_SCENARIO = SCENARIO_DIR / "demo.toml"
DEFAULT_RULES = Path(__file__).resolve().parents[1] / "rules.example.toml"
IDLE_WAIT_S = 30.0


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand."""
    parser = subparsers.add_parser("demo", help="the embedded service plus simulated stations and gates",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scenario_arguments(parser, speed="60")
    parser.add_argument("--data-dir", type=Path, help="keep the data here (default: a temporary directory)")
    parser.add_argument("--rules", type=Path, help="the rules file (default: config/rules.example.toml)")
    parser.add_argument("--every", type=duration_arg, default=3.0, help="seconds between status lines (default 3)")
    parser.set_defaults(func=cmd_demo, stations=None, gates=None)


def cmd_demo(args: argparse.Namespace) -> int:
    scenario = _scenario(args)
    with tempfile.TemporaryDirectory(prefix="parkwatch-demo-") as tmp:
        settings = _settings(load_settings(None), args.data_dir or Path(tmp), args.rules)
        service = build(settings)
        try:
            service.start()
        except ParkWatchError as exc:
            print(f"parkwatch: cannot start: {exc}", file=sys.stderr)
            return EXIT_FAILED
        try:
            return _run(service, settings, scenario, args)
        except PublishError as exc:
            print(f"parkwatch: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            service.stop()
            print(f"parkwatch: stopped; {json.dumps(service.pipeline.counters())}", flush=True)


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario is None and DEFAULT_SCENARIO.exists():
        args.scenario = DEFAULT_SCENARIO
    scenario = default_scenario() if args.scenario is None else load_scenario(args.scenario)
    updates = {key: getattr(args, key) for key in ("seed", "interval", "duration") if getattr(args, key) is not None}
    return scenario.model_copy(update=updates)


def _settings(base: Settings, data_dir: Path, rules: Path | None) -> Settings:
    rules_file = rules or (DEFAULT_RULES if DEFAULT_RULES.exists() else None)
    updates: dict[str, Any] = {"data_dir": str(data_dir)}
    if rules_file is not None:
        updates["rules"] = base.rules.model_copy(update={"file": str(rules_file.resolve())})
    return base.model_copy(update=updates)


def _run(service: Service, settings: Settings, scenario: Scenario, args: argparse.Namespace) -> int:
    park, tz = settings.park.id, settings.park.tz
    if not service.source.wait_connected(15):
        print("parkwatch: the service did not connect to its broker", file=sys.stderr)
        return EXIT_FAILED
    start = start_from_args(None, scenario, args.speed, tz)
    sim = Simulation(scenario, park=park, tz=tz, start=start)
    mqtt = mqtt_settings(settings)
    client_id = f"{mqtt.client_id}-demo-alerts"
    alerts = Recorder(replace(mqtt, client_id=client_id), [f"park/{park}/alerts/events"], client_id=client_id)
    alerts.start()
    try:
        stop = threading.Event()
        clock = make_clock(args.speed, start, stop=stop)
        runner = _SimulationThread(sim, clock, connector_for(mqtt, shared=args.shared_client or args.speed is None))
        speed = "max" if args.speed is None else f"{args.speed:g}x"
        window = f"{start.astimezone(tz).isoformat()} to {sim.end.astimezone(tz).isoformat()}"
        print(f"parkwatch: demo of park '{park}' ({scenario.name}): {len(sim.stations)} stations, "
              f"{len(sim.gates)} gates, {window} at {speed}; data in {settings.data_path}; Ctrl-C stops", flush=True)
        _watch(service, runner, clock, stop, alerts=alerts, watch=_Watch(settings), every_s=args.every)
    finally:
        alerts.stop()
    if runner.error is not None:
        print(f"parkwatch: simulation failed: {runner.error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _watch(service: Service, runner: _SimulationThread, clock: SimClock, stop: threading.Event, *,
           alerts: Recorder, watch: _Watch, every_s: float) -> None:
    """Run the simulation, printing a status line every ``every_s`` and alerts as they come; then wait
    until the service has kept everything and print the last line."""
    runner.start()
    with stop_on_signals(stop):
        while runner.is_alive() and not stop.is_set():
            runner.join(every_s)
            _print_alerts(alerts)
            print(watch.line(clock.now()), flush=True)
    stop.set()
    runner.join()
    _wait_idle(service, runner.stats)
    _print_alerts(alerts)
    print(watch.line(clock.now()), flush=True)


class _SimulationThread(threading.Thread):
    """Plays the scenario in the thread ``demo-simulation``; keeps its stats or its error."""

    def __init__(self, sim: Simulation, clock: SimClock, connector: Connector) -> None:
        super().__init__(name="demo-simulation", daemon=True)
        self._sim = sim
        self._clock = clock
        self._connector = connector
        self.stats: RunStats | None = None
        self.error: ParkWatchError | None = None

    def run(self) -> None:
        try:
            try:
                self.stats = self._sim.run(self._clock, self._connector)
            finally:
                self._connector.close()
        except ParkWatchError as exc:
            self.error = exc


@dataclass
class _Watch:
    """Reads what is stored (the SQLite store) and what was dead-lettered (the dead-letter log)."""

    settings: Settings
    offset: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def line(self, sim_now: datetime) -> str:
        local = sim_now.astimezone(self.settings.park.tz).strftime("%Y-%m-%d %H:%M")
        stations, events = self._stored()
        per_station = " ".join(f"{s} {n}" for s, n in sorted(stations.items()))
        dead = ", ".join(f"{r} {n}" for r, n in self.reasons_now().most_common())
        return (f"[{time.strftime('%H:%M:%S')}] sim {local} | readings {sum(stations.values())} ({per_station}) | "
                f"gate events {events} | dead letters {sum(self.reasons.values())}{f' ({dead})' if dead else ''}")

    def _stored(self) -> tuple[dict[str, int], int]:
        url = self.settings.store_url
        if not url.startswith("sqlite://"):
            return {}, 0
        try:
            conn = sqlite3.connect(f"file:{url.removeprefix('sqlite://')}?mode=ro", uri=True, timeout=1.0)
        except sqlite3.Error:
            return {}, 0
        try:
            return _query(conn, "SELECT station, count(*) FROM air_quality GROUP BY station"), sum(
                _query(conn, "SELECT '', count(*) FROM gate_event").values())
        finally:
            conn.close()

    def reasons_now(self) -> Counter[str]:
        path = self.settings.data_path / "deadletter.jsonl"
        try:
            with path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return self.reasons
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                self.reasons[str(json.loads(line).get("code", "unknown"))] += 1
            except (ValueError, AttributeError):
                self.reasons["unreadable"] += 1
        return self.reasons


def _query(conn: sqlite3.Connection, sql: str) -> dict[str, int]:
    try:
        return {str(k): int(n) for k, n in conn.execute(sql).fetchall()}
    except sqlite3.Error:  # the table does not exist until the first point of its kind
        return {}


def _print_alerts(alerts: Recorder) -> None:
    while (record := alerts.take(0)) is not None:
        try:
            body = json.loads(record.payload)
        except ValueError:
            continue
        if isinstance(body, dict):
            print(f"  ALERT {body.get('state', '?')} [{body.get('severity', '?')}] {body.get('rule', '?')} "
                  f"{body.get('source', '?')}: {body.get('message', '')}", flush=True)


def _wait_idle(service: Service, stats: RunStats | None, timeout_s: float = IDLE_WAIT_S) -> None:
    """Until the service has received what was published and kept it all (or ``timeout_s``)."""
    expected = stats.published if stats is not None else 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c = service.pipeline.counters()
        if c["received"] >= expected and c["in_spool"] == 0:
            return
        time.sleep(0.2)
