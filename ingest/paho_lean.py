"""A cheaper MQTT 5 Properties object for paho-mqtt's packet decoder (`install`).

paho 2.x decodes every MQTT 5 PUBLISH into a ``Properties`` object, and that object is expensive: its
constructor builds three lookup tables (28 names, 28 property definitions with ``types.index`` calls) per
instance, and ``unpack`` first ``clear``s it by walking all 28 names with ``str.replace`` and ``hasattr``.
On the benchmark machine that was 18 µs of the 18.4 µs ``decode_publish`` took per message, a quarter of
the network thread's time (py-spy, ``bench/results/profile-json-gil.txt``).

`LeanProperties` is paho's class with those tables built once and shared (paho only reads them), a
``clear`` that removes only what was set, and an ``unpack`` that returns at once for the common PUBLISH
with no properties (a property length of 0). A packet with properties is decoded by paho's own code, so
what the rest of paho (and we) see is the same object with the same attributes. `install` points the
decoder module at it; the MqttSource does so when it builds its client.

`LeanClient` is paho's client with two more per-message costs taken out:

- paho reads a packet from its socket in three or more ``recv`` calls (the command byte, each byte of the
  remaining length, the rest), after one ``select`` per packet: four system calls per message, and the
  network thread gives up the GIL around each. In the ingest worker the ingest thread holds the GIL in
  between, so every one of those calls could wait for it. A plain TCP or Unix socket is wrapped in a
  `BufferedSocket`, which takes what the kernel has (up to 256 KB) in one ``recv`` and serves paho's small
  reads from it; `read_buffered` then lets paho's public ``loop_read`` handle every packet already in the
  buffer without a ``select`` in between. A TLS socket is left as paho made it: it has a buffer of its
  own, which paho's loop already honours through ``pending()``.
- for every message paho walks its tree of per-filter callbacks (``message_callback_add``), which is
  empty for us; `LeanMatcher` answers at once when it is empty.
- every ``ack`` writes a byte to paho's wake-up socket pair, a system call per message on the ingest
  thread (14 % of its samples in the benchmark's profile) to wake a network loop that one byte wakes as
  well. `LeanClient.ack_all` queues a batch's acknowledgements and wakes the loop once.

The hooks use names private to paho (``Client._create_socket``, ``Client._on_message_filtered``,
``Client._sockpairW``). A paho without them keeps its own behaviour: the client still works, with the old
cost per message.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

_TABLES = Properties(PacketTypes.PUBLISH)  # paho's tables, built once
_NAMES: dict[str, int] = _TABLES.names
_ATTRIBUTES = frozenset(name.replace(" ", "") for name in _NAMES)
_lock = threading.Lock()


class LeanProperties(Properties):
    """paho's Properties with its lookup tables shared between instances (see the module docstring)."""

    def __init__(self, packetType: int) -> None:  # noqa: N803 (paho's name)
        own = self.__dict__
        own["packetType"] = packetType
        own["types"] = _TABLES.types
        own["names"] = _NAMES
        own["properties"] = _TABLES.properties

    def clear(self) -> None:
        own = self.__dict__
        for name in [n for n in own if n in _ATTRIBUTES]:
            del own[name]

    def unpack(self, buffer: Any) -> tuple[Properties, int]:
        if buffer[:1] == b"\x00":  # a property length of 0: no properties, one byte read
            self.clear()
            return self, 1
        result: tuple[Properties, int] = super().unpack(buffer)
        return result


def install() -> bool:
    """Make paho's packet decoder build LeanProperties; True if it does (now or already).

    A paho whose decoder no longer has a module-level ``Properties`` is left alone (logged once).
    """
    with _lock:
        current = getattr(_packet, "Properties", None)
        if current is LeanProperties:
            return True
        if current is not Properties:
            log.info("paho-mqtt's decoder has changed; its own Properties are kept (slower per message)")
            return False
        _packet.Properties = LeanProperties  # type: ignore[misc]
        return True


_READ_SIZE = 256 * 1024  # bytes per recv: a few hundred messages of a backlog in one system call
_READ_BUDGET = 1000  # packets `read_buffered` handles before the loop gets to write (acks) and keepalive


class BufferedSocket:
    """A socket whose reads go through a buffer (see the module docstring); everything else is the socket's.

    ``recv(n)`` returns up to `n` bytes: from the buffer while it holds any, otherwise from one read of up
    to 256 KB from the socket, whose errors (``BlockingIOError`` on a non-blocking socket with nothing to
    read, ``OSError``) and end of stream (``b""``) come through unchanged. ``pending()`` is what the
    buffer still holds, the same question paho asks of a TLS socket before it waits in ``select``.

    The socket reads into one bytearray kept for the connection (``recv_into``), and what came is copied
    out: ``recv(256 KB)`` allocates 256 KB per call, 14 µs against 2 µs when a call brings one message
    (live traffic: at 5,000 messages/s that was 6 % of a core).
    """

    __slots__ = ("_buf", "_pos", "_sock", "_space", "_view")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._space = bytearray(_READ_SIZE)
        self._view = memoryview(self._space)

    def recv(self, bufsize: int) -> bytes:
        pos = self._pos
        if pos >= len(self._buf):
            data = bytes(self._view[: self._sock.recv_into(self._space)])
            if len(data) <= bufsize:
                return data
            self._buf, pos = data, 0
        chunk = self._buf[pos : pos + bufsize]
        self._pos = pos + len(chunk)
        return chunk

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def buffered(self) -> tuple[bytes, int]:
        """The buffer and where its unread part starts, to parse packets in place (`LeanClient.read_publish`)."""
        return self._buf, self._pos

    def consume(self, end: int) -> None:
        """Mark the buffer read up to `end` (an index into what `buffered` returned)."""
        self._pos = end

    def send(self, data: Any) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._buf, self._pos = b"", 0
        self._sock.close()

    def __getattr__(self, name: str) -> Any:  # setblocking, settimeout, shutdown, getpeername, ...
        return getattr(self._sock, name)


class LeanMatcher(MQTTMatcher):
    """paho's tree of per-filter message callbacks, answering at once while it holds none."""

    def iter_match(self, topic: str) -> Iterator[Any]:
        if not self._root._children:
            return iter(())
        result: Iterator[Any] = super().iter_match(topic)
        return result


class LeanClient(paho.Client):
    """paho's client with buffered reads from a plain socket and no callback-tree walk while it is empty."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(getattr(self, "_on_message_filtered", None)) is MQTTMatcher:
            self._on_message_filtered = LeanMatcher()

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return BufferedSocket(sock) if type(sock) is socket.socket else sock

    def read_publish(self, sock: BufferedSocket) -> bool:
        """Handle the PUBLISH at the head of the buffer, if it is a common one; False leaves it to paho.

        paho reads a packet in three ``recv`` calls, decodes it with two ``struct`` formats built per call,
        and wraps it in an MQTTMessage that builds an MQTTMessageInfo with a Condition: 40 of the 70 µs
        the network thread spent per message (bench machine). This takes a complete MQTT 5 PUBLISH at QoS
        0 or 1 without properties from the buffer in place and hands a `LeanMessage` to the same
        ``on_message`` paho would call. Anything else (a packet not complete yet, another packet type,
        QoS 2, properties, MQTT 3, a malformed length) is left where it is for paho's own ``loop_read``.
        """
        if self._protocol != paho.MQTTv5 or self._in_packet["command"] != 0:
            return False
        buf, pos = sock.buffered()
        parsed = _parse_publish(buf, pos)
        if parsed is None:
            return False
        end, command, topic, mid, payload = parsed
        sock.consume(end)
        message = LeanMessage(mid, topic)
        message.dup = bool(command & 0x08)
        message.qos = (command & 0x06) >> 1
        message.retain = bool(command & 0x01)
        message.properties = LeanProperties(PacketTypes.PUBLISH)  # its own, empty, as paho gives each message
        message.payload = payload
        message.timestamp = paho.time_func()
        self._handle_on_message(message)
        return True

    def received_now(self) -> None:
        """What paho notes after each packet it reads (keepalive), once for the packets `read_publish` took."""
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()

    def ack_all(self, mids: Iterable[int], qos: int = 1) -> None:
        """paho's ``ack`` of each message id, waking the network loop once instead of once per message.

        paho's wake-up socket is wrapped (once) in a `_WakeSocket`, which drops the wake-ups of this thread
        while the batch is queued; other threads (a publish) wake the loop as before. The one wake-up after
        the batch comes after every packet the batch queued, so the loop writes them all.
        """
        wake = self.__dict__.get("_sockpairW")  # None: no loop to wake yet, or a paho without this pair
        if wake is not None and not isinstance(wake, _WakeSocket):
            wake = _WakeSocket(wake)
            self.__dict__["_sockpairW"] = wake  # paho only sends, closes and compares it with None
        with wake.held() if wake is not None else contextlib.nullcontext():
            for mid in mids:
                self.ack(mid, qos)
        if wake is not None:
            wake.wake()


class _WakeSocket:
    """paho's wake-up socket (the writing end of its socket pair), whose wake-ups a thread can hold."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._held = threading.local()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._held.on = True
        try:
            yield
        finally:
            self._held.on = False

    def send(self, data: bytes) -> int:
        if getattr(self._held, "on", False):
            return len(data)
        return self._sock.send(data)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: being woken already; closed: no loop
            self._sock.send(b"0")

    def __getattr__(self, name: str) -> Any:  # close, fileno, ...
        return getattr(self._sock, name)


class LeanMessage(paho.MQTTMessage):
    """paho's received message without the MQTTMessageInfo (a Condition) built per message; a received
    message never needs it, and it is built on first use if anyone asks for ``info``."""

    def __init__(self, mid: int = 0, topic: bytes = b"") -> None:
        self.state = paho.mqtt_ms_invalid
        self.mid = mid
        self._topic = topic

    def __getattr__(self, name: str) -> Any:
        if name == "info":
            self.info = paho.MQTTMessageInfo(self.mid)
            return self.info
        raise AttributeError(name)


def _parse_publish(buf: bytes, pos: int) -> tuple[int, int, bytes, int, bytes] | None:
    """(end, command, topic, packet id, payload) of the complete MQTT 5 PUBLISH at `pos`, QoS 0 or 1, with a
    topic and no properties; None for anything else (paho reads that)."""
    size = len(buf)
    if size - pos < 2:
        return None
    command = buf[pos]
    if command & 0xF0 != 0x30 or command & 0x06 > 0x02:
        return None
    length, shift, i = 0, 0, pos + 1
    while True:
        if i >= size or shift > 21:
            return None
        byte = buf[i]
        length |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            break
    end = i + length
    if end > size or length < 3:
        return None
    topic_end = i + 2 + (buf[i] << 8 | buf[i + 1])
    at = topic_end + (2 if command & 0x06 else 0)
    if topic_end == i + 2 or at >= end or buf[at] != 0:  # empty topic (an alias), or properties: paho's
        return None
    mid = buf[topic_end] << 8 | buf[topic_end + 1] if command & 0x06 else 0
    return end, command, buf[i + 2 : topic_end], mid, buf[at + 1 : end]


def read_buffered(client: paho.Client, budget: int = _READ_BUDGET) -> MQTTErrorCode:
    """Let paho handle the packets already read into the client's buffer (`BufferedSocket`), up to
    `budget` (and 1,000) packets, through its public ``loop_read``; the next ``loop`` writes what they
    made paho send."""
    sock = client.socket()
    rc = MQTTErrorCode.MQTT_ERR_SUCCESS
    if isinstance(sock, BufferedSocket):
        lean = client if isinstance(client, LeanClient) else None
        handled = 0
        for _ in range(min(budget, _READ_BUDGET)):
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not sock.pending():
                break
            if lean is not None and lean.read_publish(sock):
                handled += 1
                continue
            rc = client.loop_read()
        if lean is not None and handled:
            lean.received_now()
    return rc
