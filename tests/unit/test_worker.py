"""The ingest worker: the intake in a process of its own, handing kept values to the service's process.

These start real worker processes (spawned, as `parkwatch run` does) with a source that needs no broker;
tests/integration/test_nothing_lost.py kills them mid-stream against real servers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.decode import DecodeSettings, NewValue
from ingest.drain import DrainSettings
from ingest.errors import ParkWatchError
from ingest.interfaces import BrokerLink
from ingest.pipeline import PipelineSettings, SpoolCounters
from ingest.retry import RetryPolicy
from ingest.worker import IngestWorker, WorkerSpec
from tests.fakes import FakeSource
from tests.unit.test_drain import eventually

TS = 1795737600000
log = logging.getLogger("tests.worker_source")


@dataclass(frozen=True)
class Readings:
    """A source factory for the worker: `n` readings of station A, and one bad message."""

    n: int

    def __call__(self) -> FakeSource:
        source = FakeSource()
        for i in range(self.n):
            source.put("park/demo/air/A/reading", json.dumps({"ts": TS + i * 1000, "values": {"pm25": float(i)}}))
        source.put("park/demo/air/A/reading", "{not json")
        log.info("the worker's source holds %d messages", self.n + 1)
        return source


def no_broker() -> FakeSource:
    raise ValueError("no broker here")


def spec(tmp_path: Path, source: object) -> WorkerSpec:
    return WorkerSpec(source,  # type: ignore[arg-type]
                      DecodeSettings(park="demo", tz=ZoneInfo("Asia/Shanghai")),
                      PipelineSettings(spool_path=tmp_path / "spool.db", deadletter_log=tmp_path / "dl.jsonl",
                                       deadletter_topic="park/demo/deadletter", drain=DrainSettings()))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[IngestWorker, list[NewValue]]]:
    handle = IngestWorker(spec(tmp_path, Readings(200)))
    seen: list[NewValue] = []
    lock = threading.Lock()

    def listen(new: Sequence[NewValue]) -> None:
        with lock:
            seen.extend(new)

    handle.add_listener(listen)
    handle.start()
    yield handle, seen
    handle.stop()


class TestIngestWorker:
    def test_runs_in_a_process_of_its_own(self, worker: tuple[IngestWorker, list[NewValue]]) -> None:
        """The worker is another process; the service's handle reports the broker link like a source."""
        handle, _ = worker
        assert handle.pid is not None and handle.pid != os.getpid()
        assert isinstance(handle, BrokerLink)

    def test_kept_values_reach_the_listeners_and_the_spool_counts_them(
        self, tmp_path: Path, worker: tuple[IngestWorker, list[NewValue]]
    ) -> None:
        """The worker keeps every message in the spool; the new values come over to the service in order."""
        _, seen = worker
        counters = SpoolCounters(tmp_path / "spool.db")
        assert eventually(lambda: counters()["received"] == 201 and len(seen) == 200)
        assert [v.values["pm25"] for _, v in seen] == [float(i) for i in range(200)]  # type: ignore[union-attr]
        assert counters()["deadlettered"] == 1 and counters()["in_spool"] == 200

    def test_stop_ends_the_worker(self, tmp_path: Path) -> None:
        """Stopping the handle stops the worker process after it kept what it took."""
        handle = IngestWorker(spec(tmp_path, Readings(10)))
        handle.start()
        pid = handle.pid
        assert pid is not None and eventually(lambda: SpoolCounters(tmp_path / "spool.db")()["received"] == 11)
        handle.stop()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    def test_the_workers_log_goes_through_the_services_handlers(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Records logged in the worker reach this process's logging, with their logger and level."""
        caplog.set_level(logging.INFO)
        handle = IngestWorker(spec(tmp_path, Readings(3)))
        handle.start()
        try:
            assert eventually(lambda: "the worker's source holds 4 messages" in caplog.text)
            assert eventually(lambda: "rejected park/demo/air/A/reading" in caplog.text)  # logged by the intake
        finally:
            handle.stop()
        record = next(r for r in caplog.records if r.name == "tests.worker_source")
        assert record.levelno == logging.INFO and record.process != os.getpid()

    def test_a_worker_that_cannot_start_stops_the_start(self, tmp_path: Path) -> None:
        """An error while the worker builds its intake comes back as the start's error, with its text."""
        with pytest.raises(ParkWatchError, match="could not start: ValueError: no broker here"):
            IngestWorker(spec(tmp_path, no_broker)).start()

    def test_a_worker_that_dies_is_replaced(
        self, tmp_path: Path, worker: tuple[IngestWorker, list[NewValue]]
    ) -> None:
        """A worker killed outright is replaced after a pause; what it had kept is not handed over twice
        (the replacement's source delivers the same messages again: they are duplicates now)."""
        handle, seen = worker
        counters = SpoolCounters(tmp_path / "spool.db")
        assert eventually(lambda: counters()["received"] == 201 and len(seen) == 200)
        first = handle.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert eventually(lambda: handle.restarts == 1, timeout=20)
        assert handle.pid != first
        assert eventually(lambda: counters()["duplicates"] == 200)
        time.sleep(0.2)
        assert len(seen) == 200

    def test_a_stop_while_a_replacement_starts_stops_the_replacement(self, tmp_path: Path) -> None:
        """stop() during a restart reaches the worker being started, not only the one that died: the
        service does not wait out its shutdown timeout and then kill the new worker."""
        handle = IngestWorker(spec(tmp_path, Readings(5)), restart=RetryPolicy(initial_s=0.01, cap_s=0.01, jitter=0))
        handle.start()
        first = handle.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        time.sleep(0.2)  # the service has noticed and is starting another interpreter (about 0.5 s)
        started = time.monotonic()
        handle.stop()
        assert time.monotonic() - started < 10
        assert handle.pid is not None and handle.pid != first
        with pytest.raises(ProcessLookupError):
            os.kill(handle.pid, 0)
