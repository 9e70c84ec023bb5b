"""Where simulated and replayed messages go: a sink. An MQTT publisher for real runs, a list for tests.

    Sink           the interface: ``publish(topic, payload, qos, retain)``
    MemorySink     keeps every message (and the simulated time it went out at) in a list
    MqttPublisher  paho-mqtt 2.x, QoS 1, at most ``max_unacked`` messages unacknowledged (``publish``
                   blocks beyond that), ``flush`` waits for every acknowledgement
    Connector      gives each device its sink: one MQTT client per device with the device's will
                   (:class:`MqttConnector`, the realistic live mode) or one shared sink for everything
                   (:class:`SharedConnector`: the fast mode, and tests)

    ParkWatchError
    +-- PublishError   the broker cannot be reached, refused us, or did not acknowledge in time

paho calls ``on_publish`` holding its own lock, so the publisher's condition is never held around
``client.publish()``: a slot is taken first, and given back by the acknowledgement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from ingest.errors import ParkWatchError
from ingest.mqtt import MqttSettings, new_client

log = logging.getLogger(__name__)

MAX_UNACKED: Final = 1000
"""Publishes in flight at most: paho fails past 65,535 and slows down with a deep queue (servers.md)."""


class PublishError(ParkWatchError):
    """The broker cannot be reached, refused the connection or a message, or did not acknowledge in time."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def message_kind(topic: str) -> str:
    """What a topic of contract §1 carries: reading, hj212, event, status, appointment (or its last level)."""
    return "appointment" if "/registry/appointment/" in topic else topic.rsplit("/", 1)[-1]


class Sink(Protocol):
    """Takes messages to publish, in order. May block (back-pressure); raises PublishError if it cannot."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...


class MemorySink:
    """Keeps what is published: ``messages`` in order and, given a clock, the simulated time of each."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.messages: list[Outgoing] = []
        self.times: list[datetime] = []
        self._clock = clock

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.messages.append(Outgoing(topic, payload, qos, retain))
        if self._clock is not None:
            self.times.append(self._clock())

    def topics(self, suffix: str = "") -> list[Outgoing]:
        """The messages whose topic ends with ``suffix``."""
        return [m for m in self.messages if m.topic.endswith(suffix)]


class MqttPublisher:
    """A paho-mqtt 2.x client that publishes with bounded in-flight messages. Constructing it does no I/O.

    ``will`` is set as the client's MQTT will (a device's ``{"online": false}``, retained).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        will: Outgoing | None = None,
        max_unacked: int = MAX_UNACKED,
        timeout_s: float = 30.0,
    ) -> None:
        if not 0 < max_unacked < 65535:
            raise ValueError(f"max_unacked must be 1 to 65534, not {max_unacked}")
        self._s = settings
        self._client_id = client_id
        self._max_unacked = max_unacked
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._unacked = 0
        self._refused: str | None = None
        self._connected = threading.Event()
        self.published = 0
        self.acknowledged = 0
        self._client = self._make_client(will)

    # --- lifecycle ------------------------------------------------------------------------------------

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and start paho's network thread; PublishError if not connected within ``timeout_s``."""
        try:
            self._client.connect_async(self._s.host, self._s.port, self._s.keepalive_s)
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot connect to {self._s.host}:{self._s.port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self._client.loop_stop()
            why = self._refused or f"no connection within {timeout_s:g}s"
            raise PublishError(f"broker {self._s.host}:{self._s.port} ({self._client_id}): {why}")

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every message published so far is acknowledged; PublishError after ``timeout_s``."""
        limit = self._timeout_s if timeout_s is None else timeout_s
        with self._cond:
            if not self._cond.wait_for(lambda: self._unacked == 0, limit):
                raise PublishError(f"{self._unacked} messages not acknowledged within {limit:g}s")

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then disconnect cleanly (a clean DISCONNECT does not fire the will)."""
        try:
            self.flush(timeout_s)
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    @property
    def unacknowledged(self) -> int:
        with self._cond:
            return self._unacked

    # --- Sink -----------------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish; block while ``max_unacked`` messages wait for their acknowledgement."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._unacked < self._max_unacked, self._timeout_s):
                raise PublishError(f"broker acknowledged nothing for {self._timeout_s:g}s ({topic})")
            self._unacked += 1
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:
            self._give_back()
            raise PublishError(f"cannot publish to {topic!r}: {exc}") from exc
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._give_back()  # NO_CONN is fine: paho keeps the message and sends it on reconnect
            raise PublishError(f"paho refused the publish to {topic}: {paho.error_string(info.rc)}")
        self.published += 1

    # --- paho side ------------------------------------------------------------------------------------

    def _make_client(self, will: Outgoing | None) -> paho.Client:
        client = new_client(self._s, self._client_id)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.max_queued_messages_set(0)  # bounded by max_unacked; paho's own bound would race it
        client.max_inflight_messages_set(self._max_unacked)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = f"refused the connection: {reason}"
            log.error("broker %s:%d refused %s: %s", self._s.host, self._s.port, self._client_id, reason)
            return
        receive_maximum = getattr(props, "ReceiveMaximum", None)
        if receive_maximum:
            client.max_inflight_messages_set(min(self._max_unacked, receive_maximum))
        self._connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.is_set() and getattr(reason, "is_failure", False):
            log.warning("%s lost the broker (%s); paho reconnects", self._client_id, reason)
        self._connected.clear()

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused a message of %s: %s", self._client_id, reason)
        self.acknowledged += 1
        self._give_back()

    def _give_back(self) -> None:
        with self._cond:
            self._unacked -= 1
            self._cond.notify_all()


class Connector(Protocol):
    """Gives each simulated device the sink it publishes through."""

    def sink_for(self, device_id: str, will: Outgoing | None) -> Sink:
        """The sink of one device; ``will`` is what the broker publishes if the device vanishes."""
        ...

    def close(self) -> None:
        """Wait for everything to be acknowledged and disconnect."""
        ...


class SharedConnector:
    """One sink for every device: the fast mode (one shared MQTT client) and tests. Wills are not set:
    a shared client cannot carry one per device, so the simulation publishes offline states itself."""

    def __init__(self, sink: Sink, *, on_close: Callable[[], None] | None = None) -> None:
        self._sink = sink
        self._on_close = on_close

    def sink_for(self, device_id: str, will: Outgoing | None) -> Sink:
        return self._sink

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()


class MqttConnector:
    """One MQTT client per device, client id ``{prefix}-{device}``, with the device's will: live mode."""

    def __init__(self, settings: MqttSettings, *, client_id_prefix: str, max_unacked: int = MAX_UNACKED) -> None:
        self._s = settings
        self._prefix = client_id_prefix
        self._max_unacked = max_unacked
        self._clients: dict[str, MqttPublisher] = {}

    def sink_for(self, device_id: str, will: Outgoing | None) -> Sink:
        client = self._clients.get(device_id)
        if client is None:
            client = MqttPublisher(self._s, client_id=f"{self._prefix}-{device_id}", will=will,
                                   max_unacked=self._max_unacked)
            client.connect()
            self._clients[device_id] = client
        return client

    def close(self) -> None:
        errors: list[PublishError] = []
        for client in self._clients.values():
            try:
                client.close()
            except PublishError as exc:
                errors.append(exc)
        self._clients.clear()
        if errors:
            raise errors[0]
