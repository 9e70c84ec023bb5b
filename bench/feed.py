"""The memory part's readings (bench.memfeed): a source that makes them as the intake takes them.

A module of its own with few imports: the ingest worker unpickles `Feed` and so imports this module, and
a worker that imported bench.memfeed (and with it the whole service) weighed 80 MB instead of about 50.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ingest.messages import Message


@dataclass(frozen=True)
class Feed:
    """The source factory handed to the service (pickled into the ingest worker)."""

    park: str
    stations: int
    seconds: int
    start: datetime  # the event time of the first simulated second

    def __call__(self) -> GeneratedReadings:
        return GeneratedReadings(self)


class GeneratedReadings:
    """A Source that makes its messages when the intake takes them: a simulated second of the park (one
    reading per station) per take at most. Acknowledgements and publications go nowhere."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._topics = [f"park/{feed.park}/air/MS{n:04d}/reading" for n in range(feed.stations)]
        self._total = feed.stations * feed.seconds
        self._next = 0
        self._accepting = True
        self.published = 0
        self.reconnects = 0

    def start(self) -> None:
        pass

    def take(self, max_n: int, timeout: float) -> list[Message]:
        if not self._accepting or self._next >= self._total:
            time.sleep(timeout)
            return []
        stations, i = self._feed.stations, self._next
        sim_s, first = divmod(i, stations)
        n = min(max_n, stations - first, self._total - i)
        ts = (self._feed.start + timedelta(seconds=sim_s)).isoformat()
        now_ns = time.time_ns()
        self._next = i + n
        return [Message(self._topics[j], payload(ts, sim_s + j), now_ns, 1, False, None)
                for j in range(first, first + n)]

    def pending(self) -> int:
        """All that is not made yet: the feed is a backlog, handed out a simulated second at most a take."""
        return self._total - self._next

    def ack(self, messages: Sequence[Message]) -> None:
        pass

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        self.published += 1

    def pause_intake(self) -> None:
        self._accepting = False

    def stop(self) -> None:
        pass

    # what the rest of the service may ask an MQTT source
    def wait_connected(self, timeout: float) -> bool:
        return True

    @property
    def connected(self) -> bool:
        return True


def payload(ts: str, i: int) -> bytes:
    """Nine values, varying by station and time, below every rule's limit."""
    k = i % 40
    return (f'{{"ts":"{ts}","values":{{"pm25":{20 + k}.5,"pm10":{40 + k}.0,"so2":{8 + k % 7}.0,'
            f'"no2":{20 + k % 13}.0,"co":0.6,"o3":{60 + k}.0,"temp":12.5,"rh":55.0,"wind_speed":2.5}}}}').encode()


