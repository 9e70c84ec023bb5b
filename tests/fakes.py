"""Test doubles for the source side: a scripted source with the MqttSource interface."""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence

from ingest.messages import Message


class FakeSource:
    """Hands over messages put into it; records acknowledgements and publications."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.acked: list[Message] = []
        self.published: list[tuple[str, bytes | str]] = []
        self.connected = True
        self._next = 0

    def put(self, topic: str, payload: bytes | str, *, now_ns: int | None = None) -> Message:
        self._next += 1
        data = payload.encode() if isinstance(payload, str) else payload
        message = Message(topic, data, now_ns or time.time_ns(), 1, False, (0, self._next))
        self._queue.put(message)
        return message

    def start(self) -> None:
        pass

    def take(self, max_n: int, timeout: float) -> list[Message]:
        out: list[Message] = []
        try:
            out.append(self._queue.get(timeout=timeout))
            while len(out) < max_n:
                out.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return out

    def pending(self) -> int:
        return self._queue.qsize()

    def ack(self, messages: Sequence[Message]) -> None:
        self.acked.extend(messages)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> object:
        self.published.append((topic, payload))
        return None

    def pause_intake(self) -> None:
        pass

    def stop(self) -> None:
        pass
