"""Recording MQTT traffic to a file, and replaying a recording (or historical station data in CSV).

A recording is JSON lines, one message per line, in the order received::

    {"time": "2026-11-27T00:00:01.250000+00:00", "topic": "park/demo/air/ST01/reading",
     "payload": "{\\"ts\\": ...}", "qos": 1, "retain": false}

``payload`` is the UTF-8 text, or base64 with ``"encoding": "base64"`` when it is not UTF-8 (the form of
the dead-letter output, contract §1). ``time`` is when the recorder received it.

A replay publishes the records in file order, each when the clock reaches its ``time``: on a
:class:`~simulators.clock.ScaledClock` that starts at the first record's time, the gaps are kept (divided
by the speed); on a :class:`~simulators.clock.VirtualClock` everything goes out at once. With
:func:`shift_records` the times and the timestamps inside the payloads (``ts`` of readings, events and
statuses; ``valid_from``/``valid_to`` of appointments; DataTime and QN of HJ 212 frames, re-framed with a
correct CRC) move by one offset, so the first message is "now". Payloads that cannot be parsed (a
corrupted frame, a dead letter) are replayed unchanged. A shifted JSON payload is re-serialised compactly.

A CSV of station data (a ``ts`` column, a ``station`` column or one station given by the caller, one
column per value, optional ``<name>_flag`` columns) becomes records of JSON readings (contract §2),
ordered by ts, replayed the same way.

    ParkWatchError
    +-- RecordingError   a recording or CSV file cannot be read; names the file, the line and the reason
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic_core import PydanticCustomError

from ingest import hj212
from ingest.errors import Hj212Error, ParkWatchError
from ingest.models import VALUE_NAME, parse_ts
from ingest.mqtt import MqttSettings, new_client
from simulators.clock import SimClock
from simulators.publish import PublishError, Sink, message_kind


class RecordingError(ParkWatchError):
    """A recording or CSV file that cannot be used: ``path``, ``line`` (1-based, 0: the whole file), ``reason``."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Record:
    """One recorded message: when it was received (aware), where it went, what it carried."""

    time: datetime
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False

    def to_json(self) -> str:
        body: dict[str, object] = {"time": self.time.isoformat(), "topic": self.topic}
        try:
            body["payload"] = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            body["payload"] = base64.b64encode(self.payload).decode("ascii")
            body["encoding"] = "base64"
        body["qos"] = self.qos
        body["retain"] = self.retain
        return json.dumps(body, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Record:
        """Parse one line; ValueError saying what is wrong."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a record is a JSON object")
        moment = datetime.fromisoformat(_field(data, "time", str))
        if moment.tzinfo is None:
            raise ValueError("time needs a UTC offset")
        text = _field(data, "payload", str)
        encoding = data.get("encoding")
        if encoding == "base64":
            payload = base64.b64decode(text, validate=True)
        elif encoding is None:
            payload = text.encode("utf-8")
        else:
            raise ValueError(f"unknown encoding {encoding!r}")
        qos = data.get("qos", 1)
        if qos not in (0, 1, 2) or isinstance(qos, bool):
            raise ValueError(f"qos {qos!r} is not 0, 1 or 2")
        retain = data.get("retain", False)
        if not isinstance(retain, bool):
            raise ValueError(f"retain {retain!r} is not true or false")
        return cls(moment, _field(data, "topic", str), payload, qos, retain)


def _field(data: dict[str, Any], key: str, kind: type[str]) -> str:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{key} is missing or not a {kind.__name__}")
    return value


# ------------------------------------------------------------------------------------------- files


def write_records(out: IO[str], records: Iterable[Record]) -> int:
    """Write records as JSON lines; returns how many."""
    n = 0
    for record in records:
        out.write(record.to_json() + "\n")
        n += 1
    return n


def read_records(path: Path | str) -> list[Record]:
    """A JSON-lines recording, in file order; blank lines are skipped. RecordingError names the line."""
    path = Path(path)
    records = []
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(Record.from_json(line))
                except (ValueError, binascii.Error) as exc:
                    raise RecordingError(path, number, str(exc)) from None
    except OSError as exc:
        raise RecordingError(path, 0, f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise RecordingError(path, 0, f"not UTF-8 text: {exc.reason}") from None
    return records


def csv_records(path: Path | str, *, park: str, tz: ZoneInfo, station: str | None = None) -> list[Record]:
    """Historical station data as records of JSON readings (contract §2), ordered by ts.

    Columns: ``ts`` (ISO 8601, read in ``tz`` without an offset; or integer epoch milliseconds), ``station``
    unless ``station`` is given (which then wins), one numeric column per value, optional ``<name>_flag``.
    An empty cell is a value not measured; a row with no value is skipped.
    """
    import pandas as pd  # noqa: PLC0415 - only CSV replay needs pandas, and it is slow to import

    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"station": str, "ts": object}, keep_default_na=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RecordingError(path, 0, f"cannot read CSV: {exc}") from exc
    columns = [str(c) for c in frame.columns]
    if "ts" not in columns:
        raise RecordingError(path, 1, "no ts column")
    if station is None and "station" not in columns:
        raise RecordingError(path, 1, "no station column: name the station (--station)")
    flag_columns = [c for c in columns if c.endswith("_flag")]
    value_columns = [c for c in columns if c not in ("ts", "station", *flag_columns)]
    for name in value_columns:
        if not VALUE_NAME.fullmatch(name):
            raise RecordingError(path, 1, f"column {name!r} is not a value name (a letter, then letters, digits, _)")
    rows: list[tuple[datetime, int, Record]] = []
    for index, row in enumerate(frame.to_dict("records")):
        line = index + 2  # the header is line 1
        record = _csv_row(row, line, path, park=park, tz=tz, station=station,
                          values=value_columns, flags=flag_columns)
        if record is not None:
            rows.append((record.time, index, record))
    rows.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in rows]


def _csv_row(row: dict[str, Any], line: int, path: Path, *, park: str, tz: ZoneInfo, station: str | None,
             values: Sequence[str], flags: Sequence[str]) -> Record | None:
    raw_ts = row["ts"]
    try:
        ts = parse_ts(int(raw_ts) if _is_integer(raw_ts) else raw_ts, tz)
    except PydanticCustomError as exc:
        raise RecordingError(path, line, f"ts: {exc.message()}") from None
    name = station if station is not None else row.get("station")
    if not isinstance(name, str) or not name:
        raise RecordingError(path, line, "no station")
    measured: dict[str, float] = {}
    for column in values:
        cell = row[column]
        if cell is None or (isinstance(cell, float) and math.isnan(cell)):
            continue
        try:
            measured[column] = float(cell)
        except (TypeError, ValueError):
            raise RecordingError(path, line, f"{column}={cell!r} is not a number") from None
    if not measured:
        return None
    letters = {c.removesuffix("_flag"): str(row[c]) for c in flags
               if isinstance(row[c], str) and row[c] and c.removesuffix("_flag") in measured}
    body: dict[str, object] = {"ts": ts.astimezone(tz).isoformat(), "values": measured}
    if letters:
        body["flags"] = letters
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Record(ts, f"park/{park}/air/{name}/reading", payload, 1, False)


def _is_integer(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def load_recording(path: Path | str, *, park: str, tz: ZoneInfo, station: str | None = None) -> list[Record]:
    """A ``.csv`` file as station data, anything else as a JSON-lines recording."""
    if Path(path).suffix.lower() == ".csv":
        return csv_records(path, park=park, tz=tz, station=station)
    if station is not None:
        raise RecordingError(path, 0, "--station applies to CSV files only")
    return read_records(path)


# ------------------------------------------------------------------------------------------- replay


def replay(records: Sequence[Record], sink: Sink, clock: SimClock,
           *, on_publish: Callable[[Record], None] | None = None) -> int:
    """Publish the records in order, each when ``clock`` reaches its time; returns how many went out
    (fewer if the clock was stopped). Start the clock at the first record's time to keep the gaps."""
    sent = 0
    for record in records:
        if not clock.sleep_until(record.time):
            break
        sink.publish(record.topic, record.payload, record.qos, record.retain)
        sent += 1
        if on_publish is not None:
            on_publish(record)
    return sent


def offset_to(records: Sequence[Record], now: datetime) -> timedelta:
    """The offset, in whole seconds, that makes the first record happen at ``now``."""
    if not records:
        return timedelta()
    return timedelta(seconds=round((now - records[0].time).total_seconds()))


def shift_records(records: Iterable[Record], delta: timedelta, tz: tzinfo) -> list[Record]:
    """Records moved by ``delta``: their times and the timestamps in their payloads."""
    return [replace(r, time=r.time + delta, payload=shift_payload(r.topic, r.payload, delta, tz)) for r in records]


def shift_payload(topic: str, payload: bytes, delta: timedelta, tz: tzinfo) -> bytes:
    """The payload with its timestamps moved by ``delta``; unchanged when it cannot be parsed."""
    kind = message_kind(topic)
    if kind == "hj212":
        return _shift_frame(payload, delta, tz)
    keys = {"reading": ("ts",), "event": ("ts",), "status": ("ts",), "appointment": ("valid_from", "valid_to")}
    if kind not in keys or not payload:
        return payload
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return payload
    if not isinstance(body, dict):
        return payload
    changed = False
    for key in keys[kind]:
        moved = _shift_time(body.get(key), delta)
        if moved is not None:
            body[key] = moved
            changed = True
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() if changed else payload


def _shift_time(value: object, delta: timedelta) -> str | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value + round(delta.total_seconds() * 1000)
    if isinstance(value, str):
        try:
            return (datetime.fromisoformat(value) + delta).isoformat()
        except ValueError:
            return None
    return None


def _shift_frame(payload: bytes, delta: timedelta, tz: tzinfo) -> bytes:
    try:
        frame = hj212.decode_frame(payload)
        moment = hj212.parse_data_time(frame.data_time, tz) + delta
    except Hj212Error:
        return payload
    local = moment.astimezone(tz)
    groups = tuple(
        hj212.CpGroup(tuple(replace(item, value=hj212.format_data_time(local)) if item.key == "DataTime" else item
                            for item in group.items))
        for group in frame.cp
    )
    qn = frame.qn
    if qn is not None:
        try:
            sent = hj212.parse_data_time(qn[:14], tz) + delta
            qn = hj212.format_data_time(sent.astimezone(tz)) + qn[14:]
        except Hj212Error:
            pass
    return hj212.build_frame(replace(frame, cp=groups, qn=qn).segment(), crlf=payload.endswith(b"\r\n"))


# ----------------------------------------------------------------------------------------- recorder


class Recorder:
    """Subscribes at QoS 1 to ``filters`` and queues every message as a Record. Constructing it does no I/O.

    With MQTT 5 the subscription asks for Retain As Published, so a live retained message is recorded as
    retained; MQTT 3.1.1 brokers (the embedded amqtt) only flag retained messages sent on subscribing.
    """

    def __init__(self, settings: MqttSettings, filters: Sequence[str], *, client_id: str,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not filters:
            raise ValueError("a recorder needs at least one topic filter")
        self._s = settings
        self._filters = tuple(filters)
        self._now = now
        self._queue: queue.SimpleQueue[Record] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._client = self._make_client(client_id)

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; return once the broker has acknowledged the subscription."""
        try:
            self._client.connect(self._s.host, self._s.port, self._s.keepalive_s)
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot connect to {self._s.host}:{self._s.port}: {exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self._client.loop_stop()
            why = self._refused or f"no subscription acknowledged within {timeout_s:g}s"
            raise PublishError(f"broker {self._s.host}:{self._s.port}: {why}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def take(self, timeout_s: float) -> Record | None:
        """The next message received, waiting up to ``timeout_s``."""
        try:
            return self._queue.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def records(self, *, duration_s: float | None = None, count: int | None = None,
                stop: threading.Event | None = None) -> Iterator[Record]:
        """Messages as they arrive, until ``duration_s`` has passed, ``count`` came, or ``stop`` is set."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        n = 0
        while (count is None or n < count) and not (stop is not None and stop.is_set()):
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                return
            record = self.take(left)
            if record is not None:
                n += 1
                yield record

    # --- paho side ------------------------------------------------------------------------------------

    def _make_client(self, client_id: str) -> paho.Client:
        client = new_client(self._s, client_id)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = f"refused the connection: {reason}"
            return
        self._connected.set()
        if self._s.protocol == 5:
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            result, _ = client.subscribe([(f, options) for f in self._filters])
        else:
            result, _ = client.subscribe([(f, 1) for f in self._filters])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._refused = f"subscribe failed: {paho.error_string(result)}"

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            self._refused = f"refused {len(failed)} of {len(reasons)} topic filters: {failed[0]}"
            return
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg._topic.decode("utf-8", "replace")
        self._queue.put(Record(self._now(), topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
