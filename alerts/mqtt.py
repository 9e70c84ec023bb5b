"""The alerts' MQTT link: publishes alert states (retained while active) and takes acknowledgements.

Topics (below park/{park}/alerts/, contract §1 leaves the levels to the service):
    active/{rule}/{source}   the current state of each active alert, RETAINED, so a client that connects
                             late sees every active alert; cleared (empty retained payload) on resolve
    events                   every state change, in order, not retained
    ack                      operators publish {"alert_id", "by", "note"} here (also `parkwatch ack`)
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from alerts.interfaces import NotifyError
from alerts.model import Notification
from ingest.mqtt import MqttSettings, new_client

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[+#/\x00]")


def active_topic(park: str, rule: str, source: str) -> str:
    return f"park/{park}/alerts/active/{_UNSAFE.sub('_', rule)}/{_UNSAFE.sub('_', source)}"


class AlertLink:
    """One paho client of its own (client id + "-alerts"): a publish waits for the broker's PUBACK."""

    def __init__(self, settings: MqttSettings, park: str, on_ack: Callable[[str, str, str | None], object],
                 *, timeout_s: float = 10.0) -> None:
        self._s = settings
        self._park = park
        self._on_ack = on_ack
        self._timeout = timeout_s
        self._client = new_client(settings, f"{settings.client_id}-alerts")
        self._client.reconnect_delay_set(max(1, int(settings.retry.initial_s)), max(1, int(settings.retry.cap_s)))
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._connected = threading.Event()
        self.ack_topic = f"park/{park}/alerts/ack"

    def start(self) -> None:
        self._client.connect_async(self._s.host, self._s.port, self._s.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def send(self, notification: Notification) -> None:
        """The `mqtt` channel: every change on events; the active state retained, or cleared on resolve."""
        for alert in notification.alerts:
            body = json.dumps(alert.to_json_dict(), ensure_ascii=False)
            topic = active_topic(self._park, alert.rule, alert.source)
            self._publish(f"park/{self._park}/alerts/events", body, retain=False)
            self._publish(topic, "" if alert.state == "resolved" else body, retain=True)

    def _publish(self, topic: str, payload: str, *, retain: bool) -> None:
        if not self._client.is_connected():
            raise NotifyError("broker not connected", retryable=True)
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(self._timeout)
        except (RuntimeError, ValueError) as exc:
            raise NotifyError(f"publish to {topic} failed: {exc}", retryable=True) from exc
        if not info.is_published():
            raise NotifyError(f"no PUBACK for {topic} within {self._timeout}s", retryable=True)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("alerts link refused by the broker: %s", reason)
            return
        client.subscribe(self.ack_topic, qos=1)
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
            alert_id, by = body["alert_id"], body.get("by") or "operator"
            if not isinstance(alert_id, str) or not isinstance(by, str):
                raise TypeError("alert_id and by must be text")
            note = body.get("note")
            note = note if isinstance(note, str) else None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed acknowledgement %r: %s", msg.payload[:200], exc)
            return
        # handled on a worker thread: the manager writes to its database, which must not stall paho
        threading.Thread(target=self._on_ack, args=(alert_id, by, note), name="alerts-ack", daemon=True).start()
