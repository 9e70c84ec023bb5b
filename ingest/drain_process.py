"""The drainer in a process of its own (`[store] drainer = "process"`, the default).

    service process                                   drainer process
    DrainerProcess --- notify (kept count), stop --->   Drainer: spool -> store
        store_ok, last_error <-- store status ------

Why a process: the drainer reads, encodes and writes every point, and in the service's process it held the
GIL that the rules and the alerts need. With the rules (JSON backlog, `python -m bench.run --only ingest`)
the rules thread fell behind and held the ingest worker back through the hand-over (10,766 readings/s
with the rules, 14,588 without); under 5,000 live readings/s the crossing reading's alert waited behind
the drainer's encoding of its batches (alert p99 63.7 and 69.9 ms with the drainer on a thread, 40.2 ms
with it in a process: single runs, 2026-12-04; README, Benchmark). The drainer needs nothing from the
service but the spool, which it reads and releases on connections of its own as before, so nothing
crosses the pipe but a wake-up per kept batch and the store's status.

If the drainer dies, another starts after a pause and writes again what the dead one had not released
(stores overwrite an identical point in place). If the service dies, the drainer finds its pipe closed
and stops, leaving the rest in the spool for the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest import interpreter
from ingest.child import RESTART, ChildProcess, Link
from ingest.drain import Drainer, DrainSettings
from ingest.interfaces import Store
from ingest.retry import RetryPolicy
from ingest.spool import SpoolDb

log = logging.getLogger(__name__)

_STATUS_EVERY_S = 0.2  # how often the drainer reports the store's status (when it changed) and reads its pipe


@dataclass(frozen=True)
class DrainerSpec:
    """What the drainer process builds its drainer from. Pickled: `store` is a module-level callable (the
    composition root's StoreFactory), and the store is built in the drainer's process."""

    store: Callable[[], Store]
    spool_path: Path
    drain: DrainSettings
    synchronous: str  # of the connection that releases stored rows (ingest/pipeline.py, RELEASE_SYNCHRONOUS)


class DrainerProcess(ChildProcess):
    """The service's handle on its drainer process, with the drainer's status as the operations endpoint
    reads it (`store_ok`, `last_error`, `write_seconds`)."""

    what = "the drainer"
    role = "drainer"

    def __init__(self, spec: DrainerSpec, *, start_timeout_s: float = 60.0, restart: RetryPolicy = RESTART) -> None:
        super().__init__(_drainer_main, spec, start_timeout_s=start_timeout_s, restart=restart)
        self.store_ok = True
        self.last_error = ""
        self.write_seconds = 0.0
        self._written_before = 0.0  # write seconds of drainers that have gone

    def notify(self, count: int) -> None:
        """`count` points were kept: the drainer writes a full batch without waiting for the flush interval."""
        self.send(("notify", count))

    def stop_within(self, seconds: float) -> None:
        """Stop: the drainer writes what the spool holds for up to `seconds`, then exits; the rest stays."""
        self.stop(("stop", max(0.0, seconds)), wait_s=seconds + 30)

    def _on_message(self, message: tuple[Any, ...]) -> None:
        if message[0] == "store":
            _, self.store_ok, self.last_error, seconds = message
            self.write_seconds = self._written_before + seconds

    def _on_gone(self) -> None:
        self._written_before = self.write_seconds


# --- in the drainer process -------------------------------------------------------------------------------


def _drainer_main(spec: DrainerSpec, link: Link) -> None:
    """The drainer's body (ingest/child.py): drains on a thread until the service says stop, then writes
    what is left until the spool is empty or the stop's time is up. A drainer thread that died takes the
    process with it, and the service starts another."""
    store = spec.store()
    db = SpoolDb(spec.spool_path, synchronous=spec.synchronous).open()
    drainer = Drainer(db, store, spec.drain)
    deadline: list[float | None] = [None]
    failure: list[BaseException] = []

    def drain() -> None:
        try:
            drainer.run(deadline=lambda: deadline[0])
        except BaseException as exc:
            log.critical("the drainer's thread died", exc_info=True)
            failure.append(exc)

    thread = threading.Thread(target=drain, name="drain", daemon=True)
    interpreter.settle()  # as the service's process has them (ingest/interpreter.py)
    thread.start()
    link.started()
    reported: tuple[bool, str, float] | None = None
    try:
        while thread.is_alive():
            message = link.receive(_STATUS_EVERY_S)
            if message is not None and message[0] == "notify":
                drainer.notify(message[1])
            elif message is not None and message[0] == "stop":
                deadline[0] = time.monotonic() + (message[1] if len(message) > 1 else 0.0)
                drainer.stop()
                thread.join()
            status = (drainer.store_ok, drainer.last_error, drainer.write_seconds)
            if status != reported:
                reported = status
                link.send(("store", *status))
    finally:
        db.close()
        store.close()
    if failure:
        raise RuntimeError("the drainer's thread died") from failure[0]
