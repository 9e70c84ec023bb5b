"""The HJ 212 TCP gateway: data loggers connect over TCP; each frame goes to MQTT at QoS 1.

A frame is published to ``park/{park}/air/{station}/hj212`` (with its CR LF, as the standard writes it)
and answered with CN 9014, when its Flag asks for an answer, only once the broker has acknowledged it.
Frames of one connection are published one after the other, in order; the next bytes are read only
when the previous frame is settled, so a slow broker slows the loggers down instead of filling memory.
Everything refused (garbage, bad length or CRC, a malformed segment, an unknown MN, a frame cut by a
disconnect) is counted, logged without flooding and published to ``park/{park}/deadletter``.

    ParkWatchError
    +-- GatewayError     the gateway cannot listen, or the broker did not accept a publish in time

Threads: the asyncio loop of :class:`Hj212Gateway` runs in the thread ``hj212-gateway``; the paho network
loop of :class:`GatewayPublisher` in paho's own thread ``paho-mqtt-client-<client id>``. They meet only
in :meth:`GatewayPublisher.publish`, through a lock and ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from ingest.errors import Hj212Error, ParkWatchError, Rejected
from ingest.hj212 import FrameSplitter, answer_9014, decode_frame
from ingest.messages import DeadLetter
from ingest.models import DEVICE_ID
from ingest.mqtt import MqttSettings, new_client
from ingest.throttle import ThrottledLog
from ingest.topics import Topics

if TYPE_CHECKING:
    from config.settings import GatewaySection

log = logging.getLogger(__name__)

READ_SIZE: Final = 65536
START_TIMEOUT_S: Final = 10.0
SLOT_POLL_S: Final = 0.01
MAX_BACKLOG: Final = 1024
"""Connections the kernel may queue before they are accepted (capped again by net.core.somaxconn)."""
MAX_PENDING: Final = 10_000
"""Publishes not yet acknowledged, at most: paho fails past 65,535 and slows down long before."""

_CRLF: Final = b"\r\n"
_Item = bytes | Hj212Error


class GatewayError(ParkWatchError):
    """The gateway cannot listen, or the broker did not accept a message (refused it, or not in time)."""


# ------------------------------------------------------------------------------------------ publisher


class Publisher(Protocol):
    """Where the gateway sends frames and dead letters."""

    async def publish(self, topic: str, payload: bytes) -> None:
        """Return once the broker has accepted the message (QoS 1 PUBACK); raise GatewayError if it did not."""
        ...


class GatewayPublisher:
    """A paho-mqtt 2.x client whose ``publish`` is awaitable and resolves on the broker's PUBACK.

    paho may run ``on_publish`` before its ``publish()`` has returned the mid (the PUBACK can beat the
    caller on loopback), and calls it holding its own lock, so ours is never held around ``publish()``:
    an acknowledgement for a mid nobody waits for yet is parked in ``_early`` and picked up right after.
    At most ``max_pending`` messages are unacknowledged; one that timed out keeps its slot until the
    broker acknowledges it (paho resends it after a reconnect), so a long outage cannot pile them up.
    """

    def __init__(self, settings: MqttSettings, *, timeout_s: float = 10.0, max_pending: int = MAX_PENDING,
                 max_inflight: int = 100) -> None:
        if not 0 < max_pending < 65535:
            raise ValueError(f"max_pending must be 1 to 65534, not {max_pending}")
        self._s = settings
        self._timeout_s = timeout_s
        self._max_inflight = max_inflight
        self._slots = threading.Semaphore(max_pending)
        self._lock = threading.Lock()
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._early: dict[int, object] = {}
        self._connected = threading.Event()
        self._client = self._make_client()

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in paho's network thread; it reconnects by itself with the retry policy's delays."""
        self._client.connect_async(self._s.host, self._s.port, self._s.keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect and stop the network thread; what is not acknowledged yet is dropped."""
        self._connected.clear()
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def pending(self) -> int:
        """Publishes waiting for their acknowledgement."""
        with self._lock:
            return len(self._waiting)

    # --- publishing -----------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK, at most ``timeout_s`` in all."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._take_slot()
                await self._submit(topic, payload)
        except TimeoutError:
            raise GatewayError(f"no acknowledgement from the broker within {self._timeout_s:g}s ({topic})") from None

    async def _take_slot(self) -> None:
        # A threading semaphore: slots are given back from paho's thread, whatever loop is waiting.
        while not self._slots.acquire(blocking=False):
            await asyncio.sleep(SLOT_POLL_S)

    def _submit(self, topic: str, payload: bytes) -> asyncio.Future[None]:
        """Hand the message to paho and return the future its acknowledgement settles."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            info = self._client.publish(topic, payload, qos=1)
        except ValueError as exc:
            self._slots.release()
            raise GatewayError(f"cannot publish to {topic!r}: {exc}") from exc
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._slots.release()  # NO_CONN is fine: paho keeps the message and sends it on reconnect
            raise GatewayError(f"paho refused the publish to {topic}: {paho.error_string(info.rc)}")
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._waiting[info.mid] = future
        if early is not None:
            _settle(future, early)
        return future

    # --- paho side ------------------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        s = self._s
        client = new_client(s)
        client.max_queued_messages_set(0)  # bounded by our slots; paho's own bound would race them
        client.max_inflight_messages_set(self._max_inflight)
        client.reconnect_delay_set(max(1, round(s.retry.initial_s)), max(1, round(s.retry.cap_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker %s:%d refused the gateway's connection: %s", self._s.host, self._s.port, reason)
            return
        receive_maximum = getattr(props, "ReceiveMaximum", None)
        if receive_maximum:
            client.max_inflight_messages_set(min(self._max_inflight, receive_maximum))
        self._connected.set()
        log.info("gateway publisher connected to %s:%d", self._s.host, self._s.port)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.is_set():
            log.warning("gateway publisher lost the broker (%s); paho reconnects", reason)
        self._connected.clear()

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._slots.release()
        with self._lock:
            future = self._waiting.pop(mid, None)
            if future is None:
                self._early[mid] = reason
                return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for this acknowledgement
            future.get_loop().call_soon_threadsafe(_settle, future, reason)


def _settle(future: asyncio.Future[None], reason: object) -> None:
    if future.done():
        return  # timed out or cancelled meanwhile
    if getattr(reason, "is_failure", False):
        future.set_exception(GatewayError(f"the broker refused the message: {reason}"))
    else:
        future.set_result(None)


# ------------------------------------------------------------------------------------------- gateway


class _Connection:
    """One logger's connection: its splitter, and the bytes the splitter still holds (for dead letters)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, lenient_length: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = _peer_name(writer)
        self._splitter = FrameSplitter(lenient_length=lenient_length)
        self._held = b""

    def feed(self, data: bytes) -> list[tuple[_Item, bytes]]:
        """The frames and rejections these bytes complete, each with the raw bytes it came from."""
        window = self._held + data
        items = self._splitter.feed(data)
        done = len(window) - self._splitter.pending
        self._held = window[done:]
        return _with_raw(window[:done], items)

    def close(self) -> tuple[Hj212Error, bytes] | None:
        """End of stream: a frame left incomplete, as a ``truncated`` rejection."""
        held, self._held = self._held, b""
        error = self._splitter.close()
        return None if error is None else (error, held)

    def answer(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self, timeout_s: float) -> None:
        """Wait until the peer has taken what was written; TimeoutError if it does not read."""
        await asyncio.wait_for(self.writer.drain(), timeout_s)


class Hj212Gateway:
    """Serves data loggers on ``settings.listen``; see the module docstring for what it does with frames.

    Counters, for metrics: ``connections`` (accepted, in all), ``active``, ``refused`` (over
    ``max_connections``), ``frames`` (published), ``answered`` (9014 sent), ``rejected`` (by reason),
    ``publish_failed`` (frames the broker did not accept: not answered, so the logger sends them again).
    """

    def __init__(self, settings: GatewaySection, publisher: Publisher, *, park: str,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self._s = settings
        self._publisher = publisher
        self._topics = Topics(park)
        self._now_ns = now_ns
        self._host, self._wanted_port = _host_port(settings.listen)
        self._port: int | None = None
        self._throttled = ThrottledLog(log)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.refused = 0
        self.frames = 0
        self.answered = 0
        self.publish_failed = 0
        self.rejected: Counter[str] = Counter()

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port actually listened on (``listen`` may name port 0)."""
        if self._port is None:
            raise GatewayError("the gateway is not listening")
        return self._port

    @property
    def active(self) -> int:
        """Connections open right now."""
        return len(self._tasks)

    def counters(self) -> dict[str, int]:
        return {"connections": self.connections, "active": self.active, "refused": self.refused,
                "frames": self.frames, "answered": self.answered, "publish_failed": self.publish_failed,
                **{f"rejected_{reason}": n for reason, n in sorted(self.rejected.items())}}

    def start(self) -> None:
        """Listen in the thread ``hj212-gateway``; return once listening. GatewayError if it cannot."""
        if self._thread is not None:
            raise GatewayError("the gateway is already started")
        listening: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(listening,), name="hj212-gateway", daemon=True)
        self._thread.start()
        try:
            listening.result(timeout=START_TIMEOUT_S)
        except BaseException:
            self._thread.join(timeout=START_TIMEOUT_S)
            self._thread = None
            raise
        log.info("HJ 212 gateway listening on %s:%d", self._host, self.port)

    def stop(self) -> None:
        """Close the server and every connection, then end the loop and its thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout=START_TIMEOUT_S)
        self._port = None

    def _run(self, listening: concurrent.futures.Future[None]) -> None:
        asyncio.run(self._serve(listening))

    async def _serve(self, listening: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._accept, self._host, self._wanted_port, limit=READ_SIZE,
                                                backlog=min(self._s.max_connections, MAX_BACKLOG))
        except OSError as exc:
            listening.set_exception(GatewayError(f"cannot listen on {self._s.listen}: {exc.strerror or exc}"))
            return
        self._port = server.sockets[0].getsockname()[1]
        listening.set_result(None)
        async with server:
            await self._stopping.wait()
            server.close()
            await self._close_connections()

    async def _close_connections(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one connection -------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= self._s.max_connections:
            self.refused += 1
            self._throttled.warning("refused", "refused %s: already %d connections (hj212.gateway.max_connections)",
                                    _peer_name(writer), len(self._tasks))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None  # start_server runs each callback in a task of its own
        self._tasks.add(task)
        self.connections += 1
        conn = _Connection(reader, writer, lenient_length=self._s.lenient_length)
        log.debug("logger connected from %s", conn.peer)
        try:
            await self._session(conn)
        except Exception:  # a bug must end this connection only, never the gateway
            log.exception("connection from %s failed", conn.peer)
        finally:
            self._tasks.discard(task)
            writer.close()
            log.debug("logger %s disconnected", conn.peer)

    async def _session(self, conn: _Connection) -> None:
        try:
            while data := await self._read(conn):
                for item, raw in conn.feed(data):
                    await self._handle(conn, item, raw)
        except (ConnectionError, TimeoutError) as exc:  # reset by the peer, or it does not read its answers
            log.debug("connection from %s ends: %s", conn.peer, exc or type(exc).__name__)
        left = conn.close()
        if left is not None:
            await self._reject(conn, *left)

    async def _read(self, conn: _Connection) -> bytes:
        """The next bytes; ``b""`` at the end of the stream or after ``idle_timeout_s`` of silence."""
        try:
            return await asyncio.wait_for(conn.reader.read(READ_SIZE), self._s.idle_timeout_s)
        except TimeoutError:
            log.info("closing %s: silent for %gs (hj212.gateway.idle_timeout_s)", conn.peer, self._s.idle_timeout_s)
            return b""

    async def _handle(self, conn: _Connection, item: _Item, raw: bytes) -> None:
        if isinstance(item, Hj212Error):
            await self._reject(conn, item, raw)
        else:
            await self._on_frame(conn, item)

    async def _on_frame(self, conn: _Connection, raw: bytes) -> None:
        try:
            frame = decode_frame(raw, lenient_length=self._s.lenient_length)
            station = self._station(frame.mn)
        except Rejected as exc:
            await self._reject(conn, exc, raw)
            return
        try:
            await self._publisher.publish(f"{self._topics.prefix}air/{station}/hj212", raw + _CRLF)
        except GatewayError as exc:
            self.publish_failed += 1
            self._throttled.warning("publish_failed", "frame from %s (MN %s) not answered: %s", conn.peer,
                                    frame.mn, exc)
            return
        self.frames += 1
        if frame.needs_answer:
            self.answered += 1  # counted before the write: whoever reads the answer sees the count
            conn.answer(answer_9014(frame))
            await conn.drain(self._s.idle_timeout_s)

    def _station(self, mn: str) -> str:
        station = self._s.stations.get(mn)
        if station is not None:
            return station
        if self._s.unknown_mn == "use_mn" and DEVICE_ID.fullmatch(mn):
            return mn
        raise Rejected("unknown_mn", f"MN {mn!r} is not in hj212.gateway.stations")

    async def _reject(self, conn: _Connection, error: Rejected, raw: bytes) -> None:
        self.rejected[error.reason] += 1
        self._throttled.warning(error.reason, "rejected bytes from %s: %s", conn.peer, error)
        letter = DeadLetter(conn.peer, raw, error.reason, error.detail, self._now_ns())
        try:
            await self._publisher.publish(self._topics.deadletter, letter.to_json().encode("utf-8"))
        except GatewayError as exc:
            self._throttled.warning("deadletter_failed", "dead letter from %s not published: %s", conn.peer, exc)


# ------------------------------------------------------------------------------------------- helpers


def _host_port(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9212`` for IPv6) as validated by GatewaySection."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if not isinstance(peer, tuple) or len(peer) < 2:
        return "tcp://unknown"
    host = f"[{peer[0]}]" if ":" in str(peer[0]) else peer[0]
    return f"tcp://{host}:{peer[1]}"


def _with_raw(region: bytes, items: list[_Item]) -> list[tuple[_Item, bytes]]:
    """Pair each item with its bytes in ``region`` (what the splitter consumed): a frame with itself, a
    rejection with everything between the frames around it (shared when several rejections are adjacent).
    """
    starts: list[int | None] = []
    cursor = 0
    for item in items:
        start = region.find(item, cursor) if isinstance(item, bytes) else -1
        starts.append(start if start >= 0 else None)
        cursor = start + len(item) if start >= 0 and isinstance(item, bytes) else cursor
    out: list[tuple[_Item, bytes]] = []
    begin = 0
    for i, item in enumerate(items):
        if isinstance(item, bytes):
            out.append((item, item))
            begin = (starts[i] or 0) + len(item)
            continue
        end = next((s for s in starts[i + 1:] if s is not None), len(region))
        out.append((item, region[begin:end].strip(_CRLF)))
    return out
