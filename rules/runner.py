"""The rules thread of the running service: events in through a queue, ticks by the clock, rule state
saved to disk, and the rules file reloaded when it changes (or on `request_reload`, wired to SIGHUP).

A new rules file that does not validate keeps the old rules running and logs why. State of rules that
did not change is carried over a reload and a restart (saved every `save_every_s` and on stop).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.decode import NewValue
from ingest.errors import ConfigError
from rules.config import Park, RulesFile, compile_rules, fingerprints, load_rules
from rules.engine import RuleEngine
from rules.signals import SignalSink
from rules.state_file import StateFile

log = logging.getLogger(__name__)


class RulesRunner:
    def __init__(
        self,
        rules_path: Path | None,
        park: Park,
        sink: SignalSink,
        *,
        state_path: Path,
        tick_s: float = 5.0,
        save_every_s: float = 30.0,
        max_pending_batches: int = 1,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._path = rules_path
        self._park = park
        self._state = StateFile(state_path)
        self._tick_s = tick_s
        self._save_every = save_every_s
        self._now = now
        # Bounded: when the rules fall behind, the ingest thread waits here (and the broker holds the rest)
        # instead of the backlog growing in memory. The benchmark fed a day of 500 stations and saw RSS
        # reach gigabytes through this queue while it was unbounded, and 550 MB with 64 batches of up to
        # 5,000 decoded readings each. Even 4 batches (~2.4 KB per Decoded: ~50 MB, plus the batch the
        # ingest thread holds while it waits and the one being judged) set a high-water of Python objects
        # that pymalloc never gives back: its 1 MiB arenas stay mapped while one long-lived object (rule
        # state) sits in them, so RSS ratcheted up towards that high-water for hours (bench memory: +40 MB
        # over 4 simulated hours, used blocks flat). One pending batch still keeps the rules busy.
        self._queue: queue.Queue[Sequence[NewValue] | None] = queue.Queue(maxsize=max_pending_batches)
        self._reload = threading.Event()
        self._latest: datetime | None = None
        self._latest_arrival: datetime | None = None
        self._thread: threading.Thread | None = None
        self._file = load_rules(rules_path) if rules_path else RulesFile()
        self._mtime = self._stat()
        self.engine = RuleEngine(compile_rules(self._file, park), sink, tz=park.tz, lateness=self._file.lateness,
                                 maintenance=self._file.maintenance, now=now)

    # --- the pipeline's side --------------------------------------------------------------------------

    def feed(self, batch: Sequence[NewValue]) -> None:
        """Pipeline listener: hand a kept batch to the rules thread; waits while the rules are
        `max_pending_batches` behind (back-pressure). The batch is already kept and acknowledged."""
        if batch:
            self._put(batch)

    def _put(self, item: Sequence[NewValue] | None) -> None:
        while True:
            try:
                self._queue.put(item, timeout=1.0)
                return
            except queue.Full:
                if self._thread is None or not self._thread.is_alive():
                    log.error("the rules thread is not running; %s not judged", "a batch" if item else "stop")
                    return

    def request_reload(self) -> None:
        self._reload.set()

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._load_state()
        self._thread = threading.Thread(target=self._run, name="rules", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._save_state(now=True)
        self._state.close()

    def _run(self) -> None:
        next_tick = next_save = time.monotonic()
        while True:
            try:
                batch = self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                batch = ()
            if batch is None:
                return
            for ts_ns, value in batch:
                if value is not None:
                    at = datetime.fromtimestamp(ts_ns / 1e9, UTC)
                    self._saw(at)
                    self.engine.process(value, at)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self._tick_s
                self.engine.tick(self.event_clock())
                self._maybe_reload()
            if time.monotonic() >= next_save:
                next_save = time.monotonic() + self._save_every
                self._save_state()

    # --- the clock of time-driven rules ---------------------------------------------------------------

    def _saw(self, at: datetime) -> None:
        if self._latest is None or at > self._latest:
            self._latest, self._latest_arrival = at, self._now()

    def event_clock(self) -> datetime:
        """The time the time-driven rules (silence, overstay, closing hours) go by: the newest event time,
        moved on by the wall-clock time since it arrived, and never ahead of the wall clock. With live
        traffic this is the wall clock; when traffic runs behind it (replay, a backlog drained after an
        outage, the demo's accelerated past) a device is not silent, nor a vehicle overstaying, merely
        because the data describe an earlier time."""
        now = self._now()
        if self._latest is None or self._latest_arrival is None:
            return now
        return min(now, self._latest + (now - self._latest_arrival))

    # --- reload ---------------------------------------------------------------------------------------

    def _stat(self) -> float | None:
        try:
            return self._path.stat().st_mtime if self._path else None
        except OSError:
            return None

    def _maybe_reload(self) -> None:
        mtime = self._stat()
        if not self._reload.is_set() and mtime == self._mtime:
            return
        self._reload.clear()
        self._mtime = mtime
        if self._path is None:
            return
        try:
            new = load_rules(self._path)
            rules = compile_rules(new, self._park)
        except ConfigError as exc:
            log.error("rules file %s not loaded, the previous rules keep running: %s", self._path, exc)
            return
        state = self.engine.snapshot()
        unchanged = {n for n, f in fingerprints(new).items() if fingerprints(self._file).get(n) == f}
        self.engine = RuleEngine(rules, self.engine.sink, tz=self._park.tz, lateness=new.lateness,
                                 maintenance=new.maintenance, now=self._now)
        self.engine.restore(state, unchanged)
        self._file = new
        log.info("rules reloaded from %s: %d rules (%d kept their state)", self._path, len(rules), len(unchanged))

    # --- state ----------------------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {"fingerprints": fingerprints(self._file), "engine": self.engine.snapshot()}

    def _save_state(self, *, now: bool = False) -> None:
        """Snapshot here; encoding and the disk are the state file's writer thread's (rules/state_file.py),
        unless `now` (at stop). A state that cannot be saved is logged: the rules go on without it."""
        try:
            if now:
                self._state.save(self._snapshot())
            else:
                self._state.save_later(self._snapshot())
        except Exception:
            log.exception("cannot save the rule state; the rules go on, the next save tries again")

    def _load_state(self) -> None:
        state = self._state.load()
        if state is None:
            return
        saved = state.get("fingerprints", {})
        unchanged = {n for n, f in fingerprints(self._file).items() if saved.get(n) == f}
        self.engine.restore(state.get("engine", {}), unchanged)
        log.info("rule state restored for %d of %d rules", len(unchanged), len(self.engine.rules))

