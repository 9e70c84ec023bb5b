"""`parkwatch ack ALERT_ID [--by NAME] [--note TEXT]`: acknowledge an alert through the broker."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from config.compose import mqtt_settings
from config.settings import load_settings
from ingest.mqtt import new_client


def register(sub: Any) -> None:
    parser = sub.add_parser("ack", help="acknowledge an alert through the broker")
    parser.add_argument("alert_id")
    parser.add_argument("--by", default=None, help="who acknowledges (default: the user name)")
    parser.add_argument("--note", default=None)
    parser.add_argument("--config", type=Path, default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    mqtt = mqtt_settings(settings)
    client = new_client(mqtt, f"{mqtt.client_id}-ack")
    body = {"alert_id": args.alert_id, "by": args.by or getpass.getuser(), "note": args.note}
    try:
        client.connect(mqtt.host, mqtt.port, mqtt.keepalive_s)
    except OSError as exc:
        print(f"parkwatch ack: cannot reach the broker {mqtt.url}: {exc}", file=sys.stderr)
        return 1
    client.loop_start()
    info = client.publish(f"park/{settings.park.id}/alerts/ack", json.dumps(body, ensure_ascii=False), qos=1)
    info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    if not info.is_published():
        print("parkwatch ack: the broker did not confirm the acknowledgement", file=sys.stderr)
        return 1
    print(f"acknowledgement of {args.alert_id} sent")
    return 0
