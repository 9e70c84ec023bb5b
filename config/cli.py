"""The `parkwatch` command (contract §7)."""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from config import logs
from config.compose import build, build_gateway, mqtt_settings
from config.settings import load_settings
from ingest import interpreter
from ingest.errors import ConfigError, ParkWatchError

EXIT_CONFIG = 2
# Further subcommands, one module each under config/commands/, each with `register(subparsers)` that adds
# its parser and sets `func` (a function of the parsed arguments returning the exit code).
COMMAND_MODULES: tuple[str, ...] = (
    "config.commands.aqi",
    "config.commands.ack",
    "config.commands.rules_test",
    "config.commands.simulate",
    "config.commands.demo",
    "config.commands.record",
    "config.commands.replay",
    "config.commands.report",
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"parkwatch: bad configuration: {exc.key}: {exc.reason}", file=sys.stderr)
        return EXIT_CONFIG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parkwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the service in the foreground until SIGINT/SIGTERM")
    run.add_argument("--config", type=Path, help="TOML configuration (default: the embedded default)")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate a configuration: exit 0 if good, 2 if not")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_check_config)
    gateway = sub.add_parser("hj212-gateway", help="run the HJ 212 TCP gateway alone until SIGINT/SIGTERM")
    gateway.add_argument("--config", type=Path, help="TOML configuration (default: the embedded default)")
    gateway.add_argument("--listen", metavar="HOST:PORT", help="overrides hj212.gateway.listen")
    gateway.set_defaults(func=cmd_hj212_gateway)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    build(settings)
    print(f"{args.file}: ok")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    logs.configure(settings.log.level, settings.log.json_lines)
    service = build(settings)
    interpreter.settle()  # frozen start-up heap, rarer young collections, GIL handed over sooner
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, lambda signum, frame: service.rules.request_reload())
    try:
        service.start()
    except ParkWatchError as exc:
        print(f"parkwatch: cannot start: {exc}", file=sys.stderr)
        return 1
    kind = "embedded broker" if service.broker else "broker"
    print(f"parkwatch: listening on {kind} {service.mqtt_url}, park '{settings.park.id}'", flush=True)
    print(f"parkwatch: storing to {service.store_url}; spool and dead letters in {settings.data_path}/",
          flush=True)
    if service.http is not None:
        print(f"parkwatch: operations on {service.http.url} (/healthz, /metrics, /api/alerts, /api/vehicles)",
              flush=True)
    print(f"parkwatch: publish readings to park/{settings.park.id}/air/<station>/reading; Ctrl-C stops",
          flush=True)
    while not stop.wait(1.0):
        pass
    service.stop()
    print(f"parkwatch: stopped; {json.dumps(service.pipeline.counters())}", flush=True)
    return 0


def cmd_hj212_gateway(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    logs.configure(settings.log.level, settings.log.json_lines)
    publisher, gateway = build_gateway(settings, listen=args.listen)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    publisher.start()
    try:
        gateway.start()
    except ParkWatchError as exc:
        publisher.stop()
        print(f"parkwatch: cannot start: {exc}", file=sys.stderr)
        return 1
    host = (args.listen or settings.hj212.gateway.listen).rpartition(":")[0]
    mqtt = mqtt_settings(settings)
    print(f"parkwatch: HJ 212 gateway on {host}:{gateway.port}, frames to park/{settings.park.id}/air/<station>/hj212 "
          f"on {mqtt.url}; Ctrl-C stops", flush=True)
    while not stop.wait(1.0):
        pass
    gateway.stop()
    publisher.stop()
    print(f"parkwatch: stopped; {json.dumps(gateway.counters())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
