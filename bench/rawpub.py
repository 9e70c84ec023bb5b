"""A lean MQTT 3.1.1 QoS 1 publisher on a plain socket, for the background load of part 2.

Why not paho: the load generator shares this 2-core machine with the service it loads. paho costs
~100 µs of CPU per QoS 1 publish here (MQTTMessageInfo, Properties, its out-message bookkeeping), so a
paho generator at 5,000 readings/s takes most of a core away from the service under test. This one writes
pre-built PUBLISH packets in bursts (one `sendall` per millisecond tick) and counts PUBACKs on a reader
thread: a few µs per message. Devices in a park run on their own hardware; the benchmark should not charge
their cost to the service.

Only what the load needs: CONNECT (clean session, keep-alive off), PUBLISH QoS 1 with a bounded window of
unacknowledged packet ids, PUBACK, DISCONNECT. Any other packet from the broker is an error.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

from bench.env import HOST

CONNACK, PUBACK = 0x20, 0x40


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """A QoS 1 PUBLISH; `topic` already length-prefixed (see `topic_field`)."""
    body_len = len(topic) + 2 + len(payload)
    return b"\x32" + _remaining_length(body_len) + topic + struct.pack("!H", packet_id) + payload


def topic_field(topic: str) -> bytes:
    return _utf8(topic)


class RawPublisher:
    """QoS 1 publishes with at most `window` unacknowledged; `publish_batch` blocks while the window is full."""

    def __init__(self, port: int, *, client_id: str, window: int = 1000, host: str = HOST) -> None:
        if not 0 < window < 65535:
            raise ValueError("window must be between 1 and 65534")
        self.sent = 0
        self.acked = 0
        self._window = window
        self._next_id = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._sock = socket.create_connection((host, port), timeout=10)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        variable = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)  # level 4, clean session, no keep-alive
        body = variable + _utf8(client_id)
        self._sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        connack = self._recv_exact(4)
        if connack[0] != CONNACK or connack[3] != 0:
            raise RuntimeError(f"broker refused the connection: {connack!r}")
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_acks, name="rawpub-acks", daemon=True)
        self._reader.start()

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                whole = len(buf) - len(buf) % 4
                for i in range(0, whole, 4):  # every packet the broker sends us is a 4-byte PUBACK
                    if buf[i] != PUBACK or buf[i + 1] != 2:
                        raise RuntimeError(f"unexpected packet from the broker: {buf[i:i + 4]!r}")
                with self._cond:
                    self.acked += whole // 4
                    self._cond.notify_all()
                buf = buf[whole:]
        except (OSError, RuntimeError) as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def publish_batch(self, topics_payloads: list[tuple[bytes, bytes]], stop: threading.Event | None = None) -> bool:
        """Send the (topic_field, payload) pairs in one write; False if `stop` was set while waiting."""
        n = len(topics_payloads)
        with self._cond:
            while self.sent + n - self.acked > self._window:
                if self._error is not None:
                    raise RuntimeError(f"publisher failed: {self._error}")
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.5)
        packets = []
        for topic, payload in topics_payloads:
            self._next_id = self._next_id % 65535 + 1
            packets.append(publish_packet(topic, self._next_id, payload))
        self._sock.sendall(b"".join(packets))
        self.sent += n
        return True

    def run(self, make: Callable[[int], Iterator[tuple[bytes, bytes]]], rate: float, stop: threading.Event, *,
            max_burst: int) -> int:
        """Publish at `rate` per second until `stop`: each tick sends what is due since the start, at most
        `max_burst` at a time. `make(k)` yields the next k (topic_field, payload) pairs."""
        start = time.monotonic()
        max_burst = max(1, min(max_burst, self._window // 2))
        while not stop.is_set():
            due = min(int((time.monotonic() - start) * rate) - self.sent, max_burst)
            if due > 0 and not self.publish_batch(list(make(due)), stop):
                break
            time.sleep(0.001)
        return self.sent

    def wait_acked(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        with self._cond:
            while self.acked < self.sent and self._error is None:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return self.acked >= self.sent

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
        self._sock.close()
