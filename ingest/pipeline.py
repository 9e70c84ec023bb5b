"""The ingest pipeline: owns the threads that move a message from the source to the store.

    Intake:   source.take -> decode -> spool.keep (one transaction) -> source.ack -> listeners (rules)
                                            |
                                            +-> outbox -> dead-letter pump -> log + park/{park}/deadletter
    Pipeline: an Intake (here, or in an ingest worker process: ingest/worker.py), and the drainer (here,
              or in a process of its own: ingest/drain_process.py):
                                       spool -> drainer -> store

Threads: `ingest` (decode, keep, ack) and `deadletters` in the Intake, `drain` (spool -> store) in the
Pipeline; the source owns its network thread. They are started in `start` and stopped in `stop`, which
flushes everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingest.deadletters import DeadLetterPump, Publisher
from ingest.decode import Decoded, Decoder, NewValue
from ingest.drain import Drainer, DrainSettings
from ingest.drain_process import DrainerProcess
from ingest.errors import Rejected, SpoolError
from ingest.interfaces import Store
from ingest.messages import DeadLetter, Message
from ingest.retry import RetryPolicy
from ingest.spool import Kept, SpoolDb
from ingest.throttle import ThrottledLog

log = logging.getLogger(__name__)
Listener = Callable[[Sequence[NewValue]], None]  # the new values of a kept batch, in order
_LINGER_BELOW = 50  # messages: a batch this large is not held back for more (group commit, `_ingest_loop`)
_PRUNE_CHUNK = 2000  # dedup keys forgotten per pruning step (`_prune`)
# The drainer's releases (stored rows deleted, counted) are not synced to disk on their own. A release that a
# power cut takes back (a crash of the process cannot: WAL) only drains the same points again, which every
# store overwrites in place, and takes the counts back with it; the next synced commit of the ingest side
# makes every release before it durable (one WAL, written in order). The fsync of each release had held the
# spool's writer lock 1 - 14 ms a batch while the ingest side waited to commit (benchmark, 5,000/s live).
RELEASE_SYNCHRONOUS = "NORMAL"


class Source(Publisher, Protocol):
    """A source of messages that are acknowledged once kept."""

    def start(self) -> None: ...
    def take(self, max_n: int, timeout: float) -> list[Message]: ...
    def pending(self) -> int: ...  # received (or ready) and not yet taken
    def ack(self, messages: Sequence[Message]) -> None: ...
    def pause_intake(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    spool_path: Path
    deadletter_log: Path | None
    deadletter_topic: str
    drain: DrainSettings = DrainSettings()
    max_batch: int = 250  # messages per kept batch under live traffic
    backlog_batch: int = 1000  # ... and while at least this many wait in the source (`_batch_size`)
    linger_s: float = 0.0  # after the first message of a batch, wait this long for more (group commit)
    dedup_window_s: float = 48 * 3600
    synchronous: str = "FULL"
    shutdown_drain_s: float = 10.0
    spool_retry: RetryPolicy = RetryPolicy(initial_s=0.5, cap_s=10.0)


class Intake:
    """The receiving half: takes messages from the source, decodes them, keeps them in the spool, acknowledges
    them and hands the new values to the listeners; publishes dead letters. It runs in the service's own
    process (inside `Pipeline`) or in an ingest worker process of its own (ingest/worker.py)."""

    def __init__(
        self, source: Source, decoder: Decoder, settings: PipelineSettings,
        *, now_ns: Callable[[], int] = time.time_ns, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._source = source
        self._sleep = sleep
        self._decoder = decoder
        self._s = settings
        self._now_ns = now_ns
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._bad = ThrottledLog(log)
        self._ingest_db = SpoolDb(settings.spool_path, synchronous=settings.synchronous)
        self._pump_db = SpoolDb(settings.spool_path, synchronous=settings.synchronous)
        self.pump = DeadLetterPump(self._pump_db, settings.deadletter_log, source, settings.deadletter_topic)
        self._next_prune_ns = 0

    def add_listener(self, listener: Listener) -> None:
        """Called with the new (non-duplicate) values of each kept batch, on the ingest thread."""
        self._listeners.append(listener)

    def start(self) -> None:
        for db in (self._ingest_db, self._pump_db):
            db.open()
        self._threads = [_spawn("ingest", self._ingest_loop), _spawn("deadletters", self.pump.run)]
        self._source.start()

    def stop(self) -> None:
        """Stop taking messages, keep and ack what was taken, publish the dead letters, disconnect."""
        self._source.pause_intake()
        self._stop.set()
        timeout = self._s.shutdown_drain_s + 30
        ingest, deadletters = self._threads
        ingest.join(timeout)
        self.pump.stop()
        deadletters.join(timeout)
        self._source.stop()
        for db in (self._ingest_db, self._pump_db):
            db.close()

    # --- the ingest thread ----------------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        while True:
            batch = self._source.take(self._batch_size(), timeout=0.2)
            if batch:
                if self._lingers(batch):
                    self._sleep(self._s.linger_s)
                    batch += self._source.take(self._s.max_batch - len(batch), timeout=0)
                self.process(batch)
            elif self._stop.is_set():
                return
            self._prune()

    def _batch_size(self) -> int:
        """`max_batch` under live traffic; `backlog_batch` while a backlog waits in the source (a session
        resumed after an outage, the service catching up after a stall).

        Each kept batch costs a spool transaction with its fsync, an acknowledgement round and a hand-over
        to the rules, whatever its size. On a backlog of 200,000 readings batches of 1,000 instead of 250
        took the ingest thread's keeping from 19 to 11 us per JSON reading; `python -m bench.run --only
        ingest` (medians of 3 runs) went from 21,793 to 23,345 and 24,787 JSON readings/s in two
        invocations, HJ 212 (whose decoding is its limit) from 15,547 to 15,864 and 16,070 frames/s; 2,500
        gained nothing more (single run). Under live traffic a large batch would hold back the message
        at its head, an alert's reading among them: so only a queue this deep, which at the benchmark's
        5,000 readings/s is 0.2 s behind already, switches to the large batch."""
        backlog = self._s.backlog_batch
        return backlog if backlog > self._s.max_batch and self._source.pending() >= backlog else self._s.max_batch

    def _lingers(self, batch: Sequence[Message]) -> bool:
        """Group commit: a spool transaction (and its fsync) costs about as much for one message as for fifty,
        so under a steady trickle a short wait lets the batch fill instead of paying that cost per message. A
        batch that is that large already has nothing to wait for: under load the wait only added to every
        message's latency."""
        small = len(batch) < min(self._s.max_batch, _LINGER_BELOW)
        return small and self._s.linger_s > 0 and not self._stop.is_set()

    def process(self, batch: Sequence[Message]) -> None:
        """Decode, keep durably, acknowledge, and hand the new values to the listeners.

        One thread does all of it, in this order. A second thread that decoded the next batch while this
        one waited for SQLite made the benchmark slower (15,900 to 17,900 JSON readings/s in three runs,
        against 17,800 to 20,500 in five without it): Python's sqlite3 gives up the GIL around every row it
        inserts, and each time the decoding thread could take it and keep it for the switch interval.
        Tried again once the spool inserted a batch by statements of 256 rows (a keep thread behind a
        decoding one, 2026-12-04): HJ 212 frames/s within the noise of one thread, and the worker as busy.
        """
        topics: list[str] = []
        decoded: list[Decoded] = []
        dead: list[DeadLetter] = []
        for message in batch:
            try:
                decoded.append(self._decoder.decode(message))
                topics.append(message.topic)
            except Rejected as exc:
                dead.append(DeadLetter.of(message, exc))
                self._bad.warning(exc.reason, "rejected %s: %s (payload %r)", message.topic, exc, message.payload[:80])
            except Exception as exc:  # a decoder bug must not kill the loop: the message is dead-lettered
                log.exception("decoder failed on %s", message.topic)
                dead.append(DeadLetter.of(message, Rejected("internal_error", repr(exc)[:200])))
        kept = self._keep(topics, decoded, dead)
        self._source.ack(batch)
        if dead:
            self.pump.notify()
        new = [(d.point.ts_ns, d.value) for d in kept.new]
        deliver(self._listeners, new)

    def _keep(self, topics: list[str], decoded: list[Decoded], dead: list[DeadLetter]) -> Kept:
        attempt = 0
        while True:
            try:
                return self._ingest_db.keep(topics, decoded, dead, now_ns=self._now_ns())
            except SpoolError as exc:
                delay = self._s.spool_retry.delay(attempt)
                attempt += 1
                log.error("cannot keep a batch in the spool (%s); nothing is acknowledged; retry in %.1fs",
                          exc, delay)
                time.sleep(delay)

    def _prune(self) -> None:
        """Forget dedup keys older than the dedup window: once a minute, in chunks of `_PRUNE_CHUNK` keys
        (one per batch kept) until none is left, so that a pruning under load never holds the spool for
        long. A failed pruning is logged and tried again next minute: the keys only take space meanwhile."""
        now = self._now_ns()
        if now < self._next_prune_ns:
            return
        try:
            removed = self._ingest_db.prune_seen(now - int(self._s.dedup_window_s * 1e9), limit=_PRUNE_CHUNK)
        except SpoolError as exc:
            log.warning("%s; trying again in a minute", exc)
            removed = 0
        self._next_prune_ns = now if removed >= _PRUNE_CHUNK else now + 60 * 1_000_000_000


class Receiver(Protocol):
    """The receiving half that a Pipeline drains behind: an Intake in this process, or an ingest worker
    process (ingest/worker.py)."""

    def add_listener(self, listener: Listener) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Pipeline:
    """A receiving half and the drainer behind it: source -> spool -> store. `in_process` builds the
    pipeline whose intake runs on threads of this process."""

    def __init__(
        self, intake: Receiver, store: Store, settings: PipelineSettings,
        *, now_ns: Callable[[], int] = time.time_ns, drainer: DrainerProcess | None = None,
    ) -> None:
        """The drainer runs on a thread of this process, or in the `drainer` process if one is given (then
        `store` is the service's own copy, not written here)."""
        self._s = settings
        self.intake = intake
        self._drain_db = SpoolDb(settings.spool_path, synchronous=RELEASE_SYNCHRONOUS)
        self._process = drainer
        self.drainer: Drainer | DrainerProcess = drainer or Drainer(self._drain_db, store, settings.drain,
                                                                    now_ns=now_ns)
        self.intake.add_listener(lambda new: self.drainer.notify(len(new)))
        self.counters = SpoolCounters(settings.spool_path)
        self._deadline: float | None = None  # set by stop(): until when the drainer may keep writing
        self._thread: threading.Thread | None = None

    @classmethod
    def in_process(
        cls, source: Source, decoder: Decoder, store: Store, settings: PipelineSettings,
        *, now_ns: Callable[[], int] = time.time_ns, sleep: Callable[[float], None] = time.sleep,
        drainer: DrainerProcess | None = None,
    ) -> Pipeline:
        return cls(Intake(source, decoder, settings, now_ns=now_ns, sleep=sleep), store, settings, now_ns=now_ns,
                   drainer=drainer)

    def add_listener(self, listener: Listener) -> None:
        """Called with the new (non-duplicate) values of each kept batch, in the order they were kept."""
        self.intake.add_listener(listener)

    def start(self) -> None:
        if self._process is not None:
            self._process.start()
        else:
            drainer = self.drainer
            assert isinstance(drainer, Drainer)
            self._drain_db.open()
            self._thread = _spawn("drain", lambda: drainer.run(deadline=lambda: self._deadline))
        self.intake.start()

    def stop(self) -> None:
        """Stop taking messages, keep and ack what was taken, flush the spool to the store, exit."""
        self._deadline = time.monotonic() + self._s.shutdown_drain_s
        self.intake.stop()
        if self._process is not None:
            self._process.stop_within(self._deadline - time.monotonic())
            return
        self.drainer.stop()
        if self._thread is not None:
            self._thread.join(timeout=self._s.shutdown_drain_s + 30)
        self._drain_db.close()


class SpoolCounters:
    """The accounting, read from the spool on a connection of its own (callable from any thread)."""

    def __init__(self, spool_path: Path) -> None:
        self._db = SpoolDb(spool_path)
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, int]:
        with self._lock:
            if not self._db.is_open:
                self._db.open()
            return self._db.counters()


def deliver(listeners: Sequence[Listener], new: Sequence[NewValue]) -> None:
    """Hand a kept batch's new values to each listener; one that fails is logged and stops nothing."""
    for listener in listeners:
        try:
            listener(new)
        except Exception:
            log.exception("listener %r failed", listener)


def _spawn(name: str, target: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except Exception:
            log.critical("thread %s died", name, exc_info=True)
            raise
    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
