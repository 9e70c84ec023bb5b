"""The dead-letter pump: takes rejected messages from the spool's outbox to the local dead-letter log
(JSON lines, flushed and synced) and to `park/{park}/deadletter` (QoS 1), then forgets them.

The outbox is written in the same transaction that kept the batch, so a crash loses no dead letter; at
worst one is logged or published twice.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ingest.spool import SpoolDb

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the pump needs of the MQTT client."""

    @property
    def connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> object: ...


class DeadLetterPump:
    def __init__(
        self, spool: SpoolDb, log_path: Path | None, publisher: Publisher | None, topic: str,
        *, interval_s: float = 0.5, publish_timeout_s: float = 5.0,
        on_published: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._spool = spool
        self._log_path = log_path
        self._publisher = publisher
        self._topic = topic
        self._interval = interval_s
        self._timeout = publish_timeout_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._on_published = on_published

    def notify(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self.pump_once()
            if stopping:
                return
            self._wake.wait(self._interval)
            self._wake.clear()

    def pump_once(self, limit: int = 1000) -> int:
        """One pass over the outbox; returns how many dead letters were done with."""
        rows = self._spool.outbox(limit)
        if not rows:
            return 0
        self._append_to_log([(i, r) for i, r, logged in rows if not logged])
        if self._publisher is None:
            self._spool.forget_outbox([i for i, _, _ in rows])
            return len(rows)
        if not self._publisher.connected:
            return 0
        infos = [(i, self._publisher.publish(self._topic, record, qos=1)) for i, record, _ in rows]
        done = [i for i, info in infos if _wait(info, self._timeout)]
        self._spool.forget_outbox(done)
        self._on_published(len(done))
        return len(done)

    def _append_to_log(self, rows: list[tuple[int, str]]) -> None:
        if not rows or self._log_path is None:
            if rows:
                self._spool.mark_logged([i for i, _ in rows])
            return
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("a", encoding="utf-8") as fh:
            fh.write("".join(record + "\n" for _, record in rows))
            fh.flush()
            os.fsync(fh.fileno())
        self._spool.mark_logged([i for i, _ in rows])


def _wait(info: object, timeout: float) -> bool:
    wait = getattr(info, "wait_for_publish", None)
    if wait is None:
        return True
    try:
        wait(timeout)
    except (RuntimeError, ValueError) as exc:  # paho: queue full / not connected
        log.debug("dead letter not published yet: %s", exc)
        return False
    return bool(getattr(info, "is_published", lambda: True)())
