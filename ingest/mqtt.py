"""The MQTT source: one paho-mqtt 2.x client, its network loop in a named thread, manual acknowledgement.

Messages are handed over through a queue and parsed off the network thread. A message is acknowledged
(``ack``) only when the pipeline says it is durably kept. Acknowledgements are tied to the connection
they came on: after a reconnect the broker redelivers what was not acknowledged, and the dedup index
recognises what had already been kept.

The session is persistent (fixed client id, clean start off, a long session expiry) and the client
announces a large MQTT 5 Receive Maximum, so holding acknowledgements does not throttle delivery.

The broker keeps a persistent session's subscriptions, so a changed list of filters (a station added to or
moved away from this instance) must be applied to a resumed session: the filters the session holds are
remembered in a small file, and on a resumed session only the difference is subscribed and unsubscribed.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import paho_lean
from ingest.messages import Message
from ingest.retry import RetryPolicy
from ingest.security import client_tls_context

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

    @property
    def url(self) -> str:
        """Where the broker is, for messages: scheme, host and port, never a user or password."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def configure_security(client: paho.Client, settings: MqttSettings) -> None:
    """TLS (for mqtts://) and user name and password: the same for every MQTT client of ours.

    TLS checks the broker's certificate against `ca_file` (or the system's CAs) and its host name, uses
    TLS 1.2 or later, and presents the client certificate if one is configured. A CA, certificate or key
    file that cannot be used is a ConfigError naming the key (mqtt.ca_file, mqtt.cert_file, mqtt.key_file).
    """
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set_context(client_tls_context(ca_file=settings.ca_file, cert_file=settings.cert_file,
                                                  key_file=settings.key_file, section="mqtt"))


def new_client(settings: MqttSettings, client_id: str | None = None, **options: Any) -> paho_lean.LeanClient:
    """A paho-mqtt 2.x client for `settings`: its protocol (5 or 3.1.1) and its security (TLS, user and
    password) set the one way every client of ours needs them; `options` go to paho (manual_ack, ...)."""
    v5 = settings.protocol == 5
    paho_lean.install()  # paho's decoder builds cheaper MQTT 5 Properties (ingest/paho_lean.py)
    client = paho_lean.LeanClient(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id if client_id is None else client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        **options,
    )
    configure_security(client, settings)
    return client


def _written_by_network_thread(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho's external-loop hook: nothing to register, our network thread's `loop()` writes."""


class MqttSource:
    """Subscribes to `subscriptions` at QoS 1 and yields Messages; also publishes (dead letters, alerts).

    `held_file` remembers which filters the broker's session holds, so that a resumed session is brought to
    the current list; without it a resumed session is assumed to hold them all (MQTT 3.1.1) or is simply
    subscribed again (MQTT 5, retained messages only for filters that are new to the session).
    """

    def __init__(
        self,
        settings: MqttSettings,
        subscriptions: Sequence[str],
        *,
        held_file: Path | None = None,
        now_ns: Callable[[], int] = time.time_ns,
        name: str = "mqtt-network",
    ) -> None:
        self._s = settings
        self._subscriptions = tuple(subscriptions)
        self._held_file = held_file
        self._sync_awaited = 0  # SUBACK/UNSUBACK of the last subscription sync not yet arrived
        self._sync_ok = True
        self._now_ns = now_ns
        self._name = name
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._generation = 0
        self._stop = threading.Event()
        self._accepting = True
        self._closing = False
        self._room = threading.Event()  # set by take() once the queue is down to half the Receive Maximum
        self._full_since: float | None = None
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
        if self._queue.qsize() <= self._s.receive_maximum // 2:
            self._room.set()
        return batch

    def pending(self) -> int:
        return self._queue.qsize()

    def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge messages to the broker (only those received on the current connection)."""
        with self._lock:
            generation = self._generation
        by_qos: dict[int, list[int]] = {}
        for m in messages:
            token = m.ack
            if m.qos and isinstance(token, tuple) and token[0] == generation:
                by_qos.setdefault(m.qos, []).append(token[1])
        for qos, mids in by_qos.items():
            self._client.ack_all(mids, qos)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> paho.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    # --- paho side ------------------------------------------------------------------------------------

    def _make_client(self) -> paho_lean.LeanClient:
        v5 = self._s.protocol == 5
        client = new_client(self._s, clean_session=None if v5 else False, manual_ack=True, reconnect_on_failure=False)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
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
            generation = self._generation  # _on_connect raises it when the broker accepts this connection
            rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            try:
                kwargs: dict[str, Any] = {"clean_start": False} if self._s.protocol == 5 else {}
                self._client.connect(self._s.host, self._s.port, self._s.keepalive_s,
                                     properties=self._connect_properties(), **kwargs)
            except (OSError, ssl.SSLError, ValueError) as exc:
                delay = self._s.retry.delay(attempt)
                attempt += 1
                log.warning("broker %s unreachable (%s); retrying in %.1fs", self._s.url, exc, delay)
                self._stop.wait(delay)
                continue
            while not self._stop.is_set():
                if self._full():
                    rc = self._wait_for_room()
                else:
                    rc = self._client.loop(timeout=0.2)
                    if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:  # the packets one read brought in, one by one
                        room = self._s.receive_maximum - self._queue.qsize()
                        rc = paho_lean.read_buffered(self._client, budget=max(room, 0))
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break  # connection lost, or our own DISCONNECT has gone out
            accepted = self._generation != generation
            if accepted:
                attempt = 0
            self._connected.clear()
            if not self._stop.is_set() and not self._closing:
                delay = self._s.retry.delay(attempt)
                attempt += 1
                self.reconnects += 1
                if accepted:
                    log.warning("lost the broker; reconnecting in %.1fs", delay)
                else:  # refused (logged by _on_connect), or closed in TLS: client certificate, mqtt:// vs mqtts://
                    log.warning("broker %s closed the connection before accepting it (%s); retrying in %.1fs",
                                self._s.url, paho.error_string(rc), delay)
                self._stop.wait(delay)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the connection: %s", reason)
            client.disconnect()
            return
        with self._lock:
            self._generation += 1
        self._sync_subscriptions(client, resumed=bool(flags.session_present))
        self._connected.set()
        log.info("connected to %s:%d (session %s)", self._s.host, self._s.port,
                 "resumed" if flags.session_present else "new")

    def _sync_subscriptions(self, client: paho.Client, *, resumed: bool) -> None:
        """Bring the session's subscriptions to the configured list: all of them for a new session, only
        the difference for a resumed one whose filters are remembered."""
        held = self._held() if resumed else set()
        if held is None and self._s.protocol != 5:
            return  # a resumed MQTT 3.1.1 session of unknown filters: subscribing again would replay retained
        held = held or set()
        stale = sorted(held - set(self._subscriptions))
        new = [topic for topic in self._subscriptions if topic not in held]
        self._sync_awaited, self._sync_ok = bool(stale) + bool(new), True
        if stale:
            client.unsubscribe(stale)
            log.info("unsubscribing from %d topic filters no longer configured", len(stale))
        if not new:
            return
        if self._s.protocol == 5:  # retain handling 1: retained messages only for filters new to the session
            client.subscribe([(topic, SubscribeOptions(qos=1, retainHandling=1)) for topic in new])
        else:
            client.subscribe([(topic, 1) for topic in new])

    def _synced(self, ok: bool) -> None:
        """One SUBACK or UNSUBACK of the sync arrived; once all have, and all succeeded, remember the list."""
        self._sync_awaited -= 1
        self._sync_ok = self._sync_ok and ok
        if self._sync_awaited == 0 and self._sync_ok:
            self._remember()

    def _held(self) -> set[str] | None:
        """The filters this client id's session was last subscribed to on this broker; None if unknown."""
        if self._held_file is None:
            return None
        try:
            record = json.loads(self._held_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("session") != self._session_name():
            return None
        return {str(topic) for topic in record.get("filters", [])}

    def _remember(self) -> None:
        if self._held_file is None:
            return
        record = {"session": self._session_name(), "filters": list(self._subscriptions)}
        tmp = self._held_file.with_name(self._held_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
            os.replace(tmp, self._held_file)
        except OSError as exc:
            log.warning("cannot remember the subscriptions in %s: %s", self._held_file, exc)

    def _session_name(self) -> str:
        return f"{self._s.client_id}@{self._s.host}:{self._s.port}"

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            log.error("broker refused %d of %d subscriptions: %s", len(failed), len(reasons), failed)
        else:
            log.info("subscribed to %d topic filters at QoS 1", len(reasons))
        self._synced(not failed)

    def _on_unsubscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._synced(True)  # "no subscription existed" is no failure: the filter is gone either way

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()

    def _full(self) -> bool:
        """Whether the queue holds the Receive Maximum of messages, so the network thread stops reading.

        The broker does not always keep to the Receive Maximum we announce: Mosquitto 2.0 sent the whole
        200,000-reading backlog of the benchmark at once, the network thread read it all into this queue
        (memory) while the ingest thread, which shares its GIL, kept a tenth of its usual rate for
        seconds. Unread, the messages wait in the socket and then in the broker (TCP flow control).
        Once per half keepalive the thread reads a packet anyway: paho takes the connection for dead when
        it has received no byte for a keepalive period since its last ping.
        """
        if self._closing or self._queue.qsize() < self._s.receive_maximum:
            self._full_since = None
            return False
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        elif now - self._full_since > self._s.keepalive_s / 2:
            self._full_since = now
            return False
        return True

    def _wait_for_room(self) -> MQTTErrorCode:
        """Wait (up to 0.2 s) for take() to bring the queue down, writing what paho has queued (our acks)."""
        self._room.clear()
        if self._queue.qsize() >= self._s.receive_maximum // 2:
            self._room.wait(0.2)
        rc = self._client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = self._client.loop_misc()
        return rc

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if not self._accepting:
            return
        topic = msg._topic.decode("utf-8", "replace")
        token = (self._generation, msg.mid)  # written only in _on_connect, on this same thread
        self._queue.put(Message(topic, bytes(msg.payload), self._now_ns(), msg.qos, bool(msg.retain), token))
