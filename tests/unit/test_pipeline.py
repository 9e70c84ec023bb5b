"""The pipeline: keep before acknowledging, count everything, and let nothing stop the loop."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ingest.decode import Decoder, DecodeSettings, NewValue
from ingest.drain import DrainSettings
from ingest.pipeline import Pipeline, PipelineSettings
from ingest.stores.memory import MemoryStore
from ingest.throttle import ThrottledLog
from tests.fakes import FakeSource
from tests.unit.test_drain import eventually

TS = 1795737600000


def reading(i: int) -> str:
    return json.dumps({"ts": TS + i * 1000, "values": {"pm25": float(i)}})


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Pipeline, FakeSource, MemoryStore]]:
    source, store = FakeSource(), MemoryStore()
    decoder = Decoder(DecodeSettings(park="demo", tz=ZoneInfo("Asia/Shanghai")), time.time_ns)
    settings = PipelineSettings(spool_path=tmp_path / "spool.db", deadletter_log=tmp_path / "dl.jsonl",
                                deadletter_topic="park/demo/deadletter",
                                drain=DrainSettings(batch_size=100, flush_interval_s=0.05))
    pipeline = Pipeline.in_process(source, decoder, store, settings)
    pipeline.start()
    yield pipeline, source, store
    pipeline.stop()


class TestDurability:
    def test_kept_batches_are_synced_and_releases_left_to_the_next_commit(
        self, parts: tuple[Pipeline, FakeSource, MemoryStore]
    ) -> None:
        """The ingest side commits with the configured `synchronous` (FULL: 2); the drainer's releases with
        NORMAL (1): a release lost to a power cut only drains the same points again."""
        pipeline = parts[0]
        assert pipeline.intake._ingest_db._db.execute("PRAGMA synchronous").fetchone() == (2,)  # type: ignore[attr-defined]
        assert pipeline._drain_db._db.execute("PRAGMA synchronous").fetchone() == (1,)


class TestAcknowledgement:
    def test_every_message_is_acknowledged_once_kept(self, parts: tuple[Pipeline, FakeSource, MemoryStore]) -> None:
        """Valid, bad and duplicate messages are all acknowledged, after the spool has them."""
        pipeline, source, _ = parts
        sent = [source.put("park/demo/air/A/reading", reading(i)) for i in range(20)]
        sent.append(source.put("park/demo/air/A/reading", "{bad"))
        sent.append(source.put("park/demo/air/A/reading", reading(0)))
        assert eventually(lambda: len(source.acked) == len(sent))
        assert pipeline.counters()["received"] == len(sent)

    def test_accounting_closes_once_idle(self, parts: tuple[Pipeline, FakeSource, MemoryStore]) -> None:
        """received = stored + dead-lettered + duplicates once the spool is empty."""
        pipeline, source, store = parts
        for i in range(50):
            source.put("park/demo/air/A/reading", reading(i))
        source.put("park/demo/air/A/reading", reading(3))
        source.put("park/demo/air/A/reading", b"\xff")
        assert eventually(lambda: pipeline.counters()["in_spool"] == 0 and pipeline.counters()["received"] == 52)
        c = pipeline.counters()
        assert (c["stored"], c["deadlettered"], c["duplicates"]) == (50, 1, 1)
        assert store.count("air_quality") == 50

    def test_dead_letters_are_published_and_logged(
        self, parts: tuple[Pipeline, FakeSource, MemoryStore], tmp_path: Path
    ) -> None:
        """A bad message reaches the dead-letter topic and the local log, with its reason."""
        _, source, _ = parts
        source.put("park/demo/air/A/reading", "[]")
        assert eventually(lambda: len(source.published) == 1)
        topic, payload = source.published[0]
        assert topic == "park/demo/deadletter" and json.loads(payload)["code"] == "not_an_object"
        assert eventually((tmp_path / "dl.jsonl").exists)
        assert json.loads((tmp_path / "dl.jsonl").read_text())["code"] == "not_an_object"


def pipeline_over(source: FakeSource, tmp_path: Path, *, sleep: Callable[[float], None] = time.sleep,
                  **settings: Any) -> Pipeline:
    """A pipeline in this process from `source` to a memory store, with the given PipelineSettings."""
    decoder = Decoder(DecodeSettings(park="demo", tz=ZoneInfo("Asia/Shanghai")), time.time_ns)
    kept = PipelineSettings(spool_path=tmp_path / "spool.db", deadletter_log=None,
                            deadletter_topic="park/demo/deadletter", **settings)
    return Pipeline.in_process(source, decoder, MemoryStore(), kept, sleep=sleep)


class TestGroupCommit:
    def build(self, tmp_path: Path, source: FakeSource, linger_s: float, sleep: Callable[[float], None],
              max_batch: int = 5000) -> Pipeline:
        return pipeline_over(source, tmp_path, sleep=sleep, linger_s=linger_s, max_batch=max_batch)

    def test_messages_arriving_while_it_lingers_share_one_batch(self, tmp_path: Path) -> None:
        """After a batch's first message the pipeline waits linger_s for more, then keeps them together."""
        source, lingered, batches = FakeSource(), [], []

        def linger(seconds: float) -> None:  # four more messages arrive while the pipeline waits
            lingered.append(seconds)
            if len(lingered) == 1:
                for i in range(1, 5):
                    source.put("park/demo/air/A/reading", reading(i))

        pipeline = self.build(tmp_path, source, 0.005, linger)
        pipeline.add_listener(lambda new: batches.append(len(new)))
        pipeline.start()
        try:
            source.put("park/demo/air/A/reading", reading(0))
            assert eventually(lambda: batches == [5])
            assert lingered == [0.005]
        finally:
            pipeline.stop()

    @pytest.mark.parametrize(("linger_s", "max_batch", "waiting"), [(0.0, 5000, 3), (0.005, 3, 3), (0.005, 5000, 50)],
                             ids=["linger off", "batch already full", "batch already large (under load)"])
    def test_it_does_not_wait_when_off_or_when_the_batch_is_full_or_large(
        self, tmp_path: Path, linger_s: float, max_batch: int, waiting: int
    ) -> None:
        source, lingered, batches = FakeSource(), [], []
        for i in range(waiting):
            source.put("park/demo/air/A/reading", reading(i))
        pipeline = self.build(tmp_path, source, linger_s, lingered.append, max_batch=max_batch)
        pipeline.add_listener(lambda new: batches.append(len(new)))
        pipeline.start()
        try:
            assert eventually(lambda: batches == [waiting])
            assert lingered == []
        finally:
            pipeline.stop()


class TestBatchSize:
    def kept_batches(self, tmp_path: Path, waiting: int, max_batch: int, backlog_batch: int) -> list[int]:
        source, batches = FakeSource(), []
        for i in range(waiting):
            source.put("park/demo/air/A/reading", reading(i))
        pipeline = pipeline_over(source, tmp_path, max_batch=max_batch, backlog_batch=backlog_batch)
        pipeline.add_listener(lambda new: batches.append(len(new)))
        pipeline.start()
        try:
            assert eventually(lambda: sum(batches) == waiting)
        finally:
            pipeline.stop()
        return batches

    def test_a_backlog_is_kept_in_large_batches_until_less_than_one_waits(self, tmp_path: Path) -> None:
        """While backlog_batch messages or more wait, batches are that large; then live-sized again."""
        assert self.kept_batches(tmp_path, 2600, max_batch=250, backlog_batch=1000) == [1000, 1000, 250, 250, 100]

    def test_live_traffic_is_kept_in_live_batches(self, tmp_path: Path) -> None:
        """Fewer waiting than backlog_batch: batches of max_batch at most, so no alert waits behind more."""
        assert self.kept_batches(tmp_path, 999, max_batch=250, backlog_batch=1000) == [250, 250, 250, 249]

    def test_a_backlog_batch_equal_to_the_live_one_turns_it_off(self, tmp_path: Path) -> None:
        assert self.kept_batches(tmp_path, 600, max_batch=250, backlog_batch=250) == [250, 250, 100]


class TestIsolation:
    def test_listeners_see_only_new_values_and_a_failing_one_stops_nothing(
        self, parts: tuple[Pipeline, FakeSource, MemoryStore]
    ) -> None:
        """Rules get each new value once; a listener that raises does not stop the others or the loop."""
        pipeline, source, _ = parts
        seen: list[NewValue] = []

        def broken(values: Sequence[NewValue]) -> None:
            raise RuntimeError("rule bug")

        pipeline.add_listener(broken)
        pipeline.add_listener(seen.extend)
        for i in (1, 2, 2, 3):
            source.put("park/demo/air/A/reading", reading(i))
        assert eventually(lambda: len(source.acked) == 4)
        assert [v.values["pm25"] for _, v in seen] == [1.0, 2.0, 3.0]  # type: ignore[union-attr]


class TestDedupWindow:
    def test_a_key_older_than_the_window_is_forgotten(self, tmp_path: Path) -> None:
        """Once a minute (after a batch, or when idle) keys past the dedup window are pruned: the same
        reading is then new again. Before, pruning waited for 0.2 s without messages, which a steady load
        never gives."""
        source, clock = FakeSource(), [10**18]
        decoder = Decoder(DecodeSettings(park="demo", tz=ZoneInfo("Asia/Shanghai")), time.time_ns)
        settings = PipelineSettings(spool_path=tmp_path / "spool.db", deadletter_log=None,
                                    deadletter_topic="park/demo/deadletter", dedup_window_s=1.0)
        pipeline = Pipeline.in_process(source, decoder, MemoryStore(), settings, now_ns=lambda: clock[0])
        pipeline.start()
        try:
            source.put("park/demo/air/A/reading", reading(0))
            source.put("park/demo/air/A/reading", reading(0))
            assert eventually(lambda: pipeline.counters()["received"] == 2)
            clock[0] += 61 * 10**9
            source.put("park/demo/air/A/reading", reading(1))  # kept, then the due pruning runs
            assert eventually(lambda: pipeline.counters()["received"] == 3)
            source.put("park/demo/air/A/reading", reading(0))
            assert eventually(lambda: pipeline.counters()["received"] == 4)
            assert pipeline.counters()["duplicates"] == 1  # only the first repeat, inside the window
        finally:
            pipeline.stop()


class TestThrottledLog:
    def test_a_flood_of_one_reason_makes_a_handful_of_lines(self, caplog: pytest.LogCaptureFixture) -> None:
        """A million bad messages of one kind log `burst` lines and then one summary per window."""
        clock = [0.0]
        throttled = ThrottledLog(logging.getLogger("t"), burst=3, window_s=60, now=lambda: clock[0])
        with caplog.at_level(logging.WARNING):
            for _ in range(1_000):
                throttled.warning("invalid_json", "bad")
            clock[0] = 61.0
            throttled.warning("invalid_json", "bad")
        assert len(caplog.records) == 5
        assert "997 more" in caplog.records[3].getMessage()
