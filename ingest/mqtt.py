"""The MQTT source: one paho-mqtt 2.x client, its network loop in a named thread, manual acknowledgement.

Messages are handed over through a queue and parsed off the network thread. A message is acknowledged
(``ack``) only when the pipeline says it is durably kept. Acknowledgements are tied to the connection
they came on: after a reconnect the broker redelivers what was not acknowledged, and the dedup index
recognises what had already been kept.

The session is persistent (fixed client id, clean start off, a long session expiry) and the client
announces a large MQTT 5 Receive Maximum, so holding acknowledgements does not throttle delivery.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.messages import Message
from ingest.retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "parkwatch"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    protocol: int = 5  # 5 for MQTT 5, 4 for MQTT 3.1.1 (the embedded broker speaks only 3.1.1)
    keepalive_s: int = 30
    receive_maximum: int = 10000
    session_expiry_s: int = 7 * 86400
    retry: RetryPolicy = RetryPolicy(initial_s=0.5, cap_s=30.0)


def _written_by_network_thread(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho's external-loop hook: nothing to register, our network thread's `loop()` writes."""


class MqttSource:
    """Subscribes to `subscriptions` at QoS 1 and yields Messages; also publishes (dead letters, alerts)."""

    def __init__(
        self,
        settings: MqttSettings,
        subscriptions: Sequence[str],
        *,
        now_ns: Callable[[], int] = time.time_ns,
        name: str = "mqtt-network",
    ) -> None:
        self._s = settings
        self._subscriptions = tuple(subscriptions)
        self._now_ns = now_ns
        self._name = name
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._generation = 0
        self._stop = threading.Event()
        self._accepting = True
        self._closing = False
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self.reconnects = 0
        self._client = self._make_client()

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def pause_intake(self) -> None:
        """Stop handing over new messages; those not taken are left unacknowledged for the next session."""
        self._accepting = False

    def stop(self) -> None:
        """Disconnect cleanly: acknowledgements already queued go out before the DISCONNECT."""
        self._closing = True
        if self._connected.is_set():
            self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the pipeline's side --------------------------------------------------------------------------

    def take(self, max_n: int, timeout: float) -> list[Message]:
        """Up to `max_n` messages; waits up to `timeout` for the first."""
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        get = self._queue.get_nowait
        try:
            while len(batch) < max_n:
                batch.append(get())
        except queue.Empty:
            pass
        return batch

    def pending(self) -> int:
        return self._queue.qsize()

    def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge messages to the broker (only those received on the current connection)."""
        with self._lock:
            generation = self._generation
        client = self._client
        for m in messages:
            token = m.ack
            if m.qos and isinstance(token, tuple) and token[0] == generation:
                client.ack(token[1], m.qos)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> paho.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    # --- paho side ------------------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        s = self._s
        v5 = s.protocol == 5
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set(ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        # Acknowledgements are queued by the ingest thread and written by the network thread's loop (woken
        # through paho's socket pair), in batches: without this hook paho writes each PUBACK itself, on the
        # calling thread, a syscall and a lock round per message.
        client.on_socket_register_write = _written_by_network_thread
        return client

    def _connect_properties(self) -> Properties | None:
        if self._s.protocol != 5:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._s.session_expiry_s
        props.ReceiveMaximum = self._s.receive_maximum
        return props

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set() and not self._closing:
            try:
                kwargs: dict[str, Any] = {"clean_start": False} if self._s.protocol == 5 else {}
                self._client.connect(self._s.host, self._s.port, self._s.keepalive_s,
                                     properties=self._connect_properties(), **kwargs)
            except (OSError, ssl.SSLError, ValueError) as exc:
                delay = self._s.retry.delay(attempt)
                attempt += 1
                log.warning("broker %s:%d unreachable (%s); retrying in %.1fs", self._s.host, self._s.port,
                            exc, delay)
                self._stop.wait(delay)
                continue
            while not self._stop.is_set():
                rc = self._client.loop(timeout=0.2)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break  # connection lost, or our own DISCONNECT has gone out
            if self._connected.is_set():
                attempt = 0
            self._connected.clear()
            if not self._stop.is_set() and not self._closing:
                delay = self._s.retry.delay(attempt)
                attempt += 1
                self.reconnects += 1
                log.warning("lost the broker; reconnecting in %.1fs", delay)
                self._stop.wait(delay)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the connection: %s", reason)
            client.disconnect()
            return
        with self._lock:
            self._generation += 1
        if not flags.session_present:
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        self._connected.set()
        log.info("connected to %s:%d (session %s)", self._s.host, self._s.port,
                 "resumed" if flags.session_present else "new")

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            log.error("broker refused %d of %d subscriptions: %s", len(failed), len(reasons), failed)
        else:
            log.info("subscribed to %d topic filters at QoS 1", len(reasons))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if not self._accepting:
            return
        topic = msg._topic.decode("utf-8", "replace")
        token = (self._generation, msg.mid)  # written only in _on_connect, on this same thread
        self._queue.put(Message(topic, bytes(msg.payload), self._now_ns(), msg.qos, bool(msg.retain), token))
