"""Benchmark traffic: readings as JSON or as HJ 212 CN 2011 frames, and a QoS 1 publisher whose in-flight
window stays bounded (paho 2.2 slows down with a deep outgoing queue and fails past 65,535 unacknowledged
publishes, servers.md).

Readings are deterministic and valid: station `i % stations`, event time `base + i // stations` seconds,
nine values well inside every rule's limits, so a backlog raises no alert and has no duplicate.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from bench.env import HOST, PARK
from ingest import hj212

Format = Literal["json", "hj212"]
TZ = ZoneInfo("Asia/Shanghai")
Item = tuple[str, bytes]


def values_for(i: int) -> dict[str, float]:
    """Nine plausible values that cross no rule's limit (pm25 < 75, so2 < 500, no2 < 200, o3 < 200)."""
    k = i % 40
    return {"pm25": 20.0 + k, "pm10": 40.0 + k, "so2": 8.0 + k % 7, "no2": 20.0 + k % 13, "co": 0.6,
            "o3": 60.0 + k, "temp": 12.5, "rh": 55.0, "wind_speed": 2.5}


def station_id(n: int, prefix: str = "ST") -> str:
    return f"{prefix}{n:04d}"


def json_payload(ts: datetime, values: dict[str, float]) -> bytes:
    return json.dumps({"ts": ts.isoformat(), "values": values}, separators=(",", ":")).encode()


def hj212_payload(station_no: int, ts: datetime, values: dict[str, float]) -> bytes:
    return hj212.encode_readings(f"8888888{station_no:07d}", "2011", ts, values, tz=TZ)


def reading(i: int, fmt: Format, *, stations: int, base: datetime, prefix: str = "ST") -> Item:
    """The i-th reading of a stream: (topic, payload)."""
    n = i % stations
    ts = base + timedelta(seconds=i // stations)
    station = station_id(n, prefix)
    if fmt == "json":
        return f"park/{PARK}/air/{station}/reading", json_payload(ts, values_for(i))
    return f"park/{PARK}/air/{station}/hj212", hj212_payload(n, ts, values_for(i))


def backlog(n: int, fmt: Format, *, stations: int = 100, base: datetime | None = None) -> list[Item]:
    """n readings on `stations` stations, event times from a day ago (each station one per second)."""
    start = base or datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return [reading(i, fmt, stations=stations, base=start) for i in range(n)]


class BoundedPublisher:
    """A paho MQTT 5 client that publishes at QoS 1 with at most `window` publishes unacknowledged."""

    def __init__(self, port: int, *, window: int = 1000, client_id: str | None = None) -> None:
        self.sent = 0
        self.acked = 0
        self._window = threading.BoundedSemaphore(window)
        self._lock = threading.Lock()
        name = client_id or f"bench-pub-{uuid.uuid4().hex[:8]}"
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5)
        # Unlimited in paho (the semaphore is the window): with a limit, paho walks every unacknowledged message
        # on each PUBACK (Client._update_inflight), which capped this publisher at ~3,300 msg/s.
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.connect(HOST, port)
        self._client.loop_start()
        end = time.monotonic() + 10
        while not self._client.is_connected():
            if time.monotonic() > end:
                raise RuntimeError(f"publisher could not connect to {HOST}:{port}")
            time.sleep(0.01)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self.acked += 1
        self._window.release()

    def publish(self, topic: str, payload: bytes, stop: threading.Event | None = None) -> bool:
        """Publish at QoS 1; blocks while `window` publishes wait for their PUBACK (False: `stop` was set)."""
        while not self._window.acquire(timeout=0.5):
            if stop is not None and stop.is_set():
                return False
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish failed: {info.rc}")
        self.sent += 1
        return True

    def publish_all(self, items: Iterable[Item], *, rate: float | None = None,
                    stop: threading.Event | None = None) -> int:
        """Publish every item (at `rate` per second if given; until `stop` is set); returns how many."""
        start = time.monotonic()
        count = 0
        for topic, payload in items:
            if stop is not None and stop.is_set():
                break
            if not self.publish(topic, payload, stop):
                break
            count += 1
            if rate is not None:
                ahead = start + count / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        return count

    def wait_acked(self, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        while self.acked < self.sent:
            if time.monotonic() > end:
                raise RuntimeError(f"{self.sent - self.acked} publishes never acknowledged")
            time.sleep(0.02)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def now_ms() -> datetime:
    """The current time, to the millisecond (event times of live readings)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


_VALUES = [json.dumps(values_for(k), separators=(",", ":")).encode() for k in range(40)]


def live_payload() -> Callable[[int], bytes]:
    """`payload(i)`: the i-th reading's JSON (`json_payload(now_ms(), values_for(i))`), stamped with the
    millisecond this was called in; cheap, for a load generator."""
    head = b'{"ts":"' + now_ms().isoformat().encode() + b'","values":'
    return lambda i: head + _VALUES[i % 40] + b"}"
