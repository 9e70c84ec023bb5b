"""Part 3's child process: the service, built by config.compose.build exactly as `parkwatch run` builds it
except that its MQTT source is an in-memory feed, gets `stations` readings per simulated second for
`seconds` simulated seconds (event times from `seconds` ago up to now), as fast as the pipeline takes them;
the process samples its own RSS every `sample_every` readings. It stops feeding early (and says so) if its
RSS passes `rss_cap_mb`: the machine is shared, and a service that grows past ten times its budget has
answered the question.

Publishing 43 million messages through mosquitto would take hours on this machine (the service keeps
about 7,000 readings/s from the broker), so the readings enter where the broker would hand them over:
the source's queue, taken by the pipeline's own ingest thread. Everything after the source is the
service's: decode and validation, the spool (dedup index included), acknowledgement (a no-op here), the
drainer to InfluxDB, the rules thread (threshold rules and the air-quality tracker), the alerts layer.

    python -m bench.memfeed PARAMS.json     # prints one JSON line per sample, then {"done": ...}
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import queue
import resource
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import psutil

from config import heap
from config.compose import build
from config.settings import settings_from_dict
from ingest.messages import Message

MB = 1024 * 1024


class FeedSource:
    """The Source the pipeline takes messages from: a bounded in-memory queue (the feeder blocks while
    it is full, so the service sets the pace). Acknowledgements and publications go nowhere."""

    def __init__(self, maxsize: int = 20_000) -> None:
        self._queue: queue.Queue[Message] = queue.Queue(maxsize)
        self.published = 0

    def put(self, message: Message) -> None:
        self._queue.put(message)

    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        pass

    def take(self, max_n: int, timeout: float) -> list[Message]:
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        try:
            while len(batch) < max_n:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return batch

    def ack(self, messages: Sequence[Message]) -> None:
        pass

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        self.published += 1

    def pause_intake(self) -> None:
        pass

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


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / MB


def sqlite_memory() -> Callable[[], float | None]:
    """SQLite's own heap in MB, all connections of the process (sqlite3_memory_used), where the sqlite3
    module uses the system's libsqlite3 (Debian's Python and this machine's do); else None. Diagnostic: it
    found the growth of the simulated day in SQLite's cached statements."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):
        return lambda: None
    return lambda: round(lib.sqlite3_memory_used() / MB, 1)


def main(argv: list[str]) -> int:
    p: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    settings = settings_from_dict(p["settings"], {})
    feed = FeedSource()
    with mock.patch("config.compose.MqttSource", lambda *args, **kwargs: feed):
        service = build(settings)
    heap.settle()  # as config.cli.cmd_run does
    topics = [f"park/{settings.park.id}/air/MS{n:04d}/reading" for n in range(p["stations"])]
    seconds, every, cap = p["seconds"], p["sample_every"], p["rss_cap_mb"]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)
    # Diagnostic only: batches waiting for the rules thread (the queue is private to RulesRunner).
    rules_queue = getattr(service.rules, "_queue", None)
    service.start()
    t0 = time.monotonic()
    sqlite_mb = sqlite_memory()

    def sample(fed: int, sim_s: int) -> dict[str, Any]:
        c = service.pipeline.counters()
        row = {"readings": fed, "sim_s": sim_s, "elapsed_s": round(time.monotonic() - t0, 2),
               "rss_mb": round(rss_mb(), 1), "sqlite_mb": sqlite_mb(), "stored": c["stored"], "in_spool": c["in_spool"],
               "rules_backlog_batches": rules_queue.qsize() if hasattr(rules_queue, "qsize") else None}
        print(json.dumps(row), flush=True)
        return row

    samples = [sample(0, 0)]
    fed = sim_s = 0
    now_ns = time.time_ns
    while sim_s < seconds and samples[-1]["rss_mb"] <= cap:
        ts = (start + timedelta(seconds=sim_s)).isoformat()
        for j, topic in enumerate(topics):
            feed.put(Message(topic, payload(ts, sim_s + j), now_ns(), 1, False, None))
            fed += 1
            if fed % every == 0:
                samples.append(sample(fed, sim_s))
        sim_s += 1
    capped = sim_s < seconds
    feed_s = time.monotonic() - t0
    settle = time.monotonic() + 600
    while time.monotonic() < settle and (service.pipeline.counters()["in_spool"] > 0 or feed.pending()
                                         or (hasattr(rules_queue, "qsize") and rules_queue.qsize() > 0)):
        time.sleep(0.2)
    time.sleep(1.0)
    samples.append(sample(fed, sim_s))
    elapsed = time.monotonic() - t0
    counters = service.pipeline.counters()
    service.stop()
    files = {f.name: f.stat().st_size for f in settings.data_path.glob("spool.db*")}
    print(json.dumps({"done": True, "readings": fed, "sim_s": sim_s, "capped": capped, "feed_s": feed_s,
                      "elapsed_s": elapsed, "rate": fed / elapsed,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "samples": samples, "counters": counters, "spool_files": files}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
