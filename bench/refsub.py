"""The reference limit: a plain paho subscriber that only counts messages (QoS 1, persistent session,
automatic acknowledgement), with the service's MQTT settings (MQTT 5, Receive Maximum 10,000, the same
topic filters). Runs in a process of its own, like the service.

    python -m bench.refsub --port P --client-id ID --create     # create the session (subscribe), leave
    python -m bench.refsub --port P --client-id ID --count N    # resume it, count N messages, print JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.env import HOST, PARK
from ingest.topics import Topics


class Counter:
    def __init__(self, client: paho.Client, target: int, create: bool) -> None:
        self.client = client
        self.target = target
        self.create = create
        self.count = 0
        self.connected_at = 0.0
        self.first_at = 0.0
        self.done_at = 0.0
        self.session_present = False
        self.cpu_at_connect = 0.0
        self.cpu_at_done = 0.0

    def on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected_at = time.time()
        self.cpu_at_connect = time.process_time()
        self.session_present = bool(flags.session_present)
        if not flags.session_present:
            client.subscribe([(t, 1) for t in Topics(PARK).subscriptions()])

    def on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if self.create:
            client.disconnect()

    def on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.count += 1
        if self.count == 1:
            self.first_at = time.time()
        if self.count >= self.target:
            self.done_at = time.time()
            self.cpu_at_done = time.process_time()
            client.disconnect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refsub")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--create", action="store_true")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--receive-maximum", type=int, default=10000)
    args = parser.parse_args(argv)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=MQTTProtocolVersion.MQTTv5)
    counter = Counter(client, args.count, args.create)
    client.on_connect = counter.on_connect
    client.on_subscribe = counter.on_subscribe
    client.on_message = counter.on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 86400
    props.ReceiveMaximum = args.receive_maximum
    client.connect(HOST, args.port, keepalive=60, clean_start=False, properties=props)
    client.loop_forever()
    print(json.dumps({"count": counter.count, "connected_at": counter.connected_at, "first_at": counter.first_at,
                      "done_at": counter.done_at, "session_present": counter.session_present,
                      "cpu_s": counter.cpu_at_done - counter.cpu_at_connect}), flush=True)
    return 0 if args.create or counter.count >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
