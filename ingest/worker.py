"""The ingest worker: the intake (MQTT source, decoding, spool, acknowledgement, dead letters) in a process
of its own, beside the service's process (drainer, rules, alerts, operations endpoint).

    service process                                        ingest worker process
    IngestWorker --- stop --------------------------->      MqttSource -> Decoder -> spool -> ack
        listeners <-- kept batches, broker status ----       dead-letter pump -> log, MQTT
    drainer: spool -> store

Why a process: one Python process runs Python on one core at a time. Profiled with the whole service in
one process at 4,500 readings/s (`python -m bench.profile --live 4500 --gil`), the receiving side took
62 % of the GIL (network 23 %, decoding, validation and the spool 39 %) and the rest 38 % (rules 26 %,
drainer 12 %); at 5,000 readings/s the service fell behind while the machine's second core was mostly
idle. The benchmark's figures before and after are in the README.

The spool is the hand-over, as it was between threads: the worker keeps a batch in one transaction,
acknowledges it, then sends the batch's new values here for the rules; the drainer reads the spool. Both
processes write to the spool and take turns on its writer lock (ingest/spool.py); the counters live there.

The process, its start, its log and its restarts are ingest/child.py's. If the worker dies,
`IngestWorker` starts another after a pause: what the dead one had taken but not kept
was not acknowledged, so the broker delivers it again. If the service dies, the worker finds its pipe
closed and stops as on `stop`: it takes nothing more, keeps and acknowledges what it took, and exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest import interpreter
from ingest.child import RESTART, ChildProcess, Link
from ingest.decode import Decoder, DecodeSettings, NewValue
from ingest.interfaces import BrokerLink
from ingest.mqtt import MqttSettings, MqttSource
from ingest.pipeline import Intake, Listener, PipelineSettings, Source, deliver
from ingest.retry import RetryPolicy

log = logging.getLogger(__name__)

_STATUS_EVERY_S = 0.2  # how often the worker looks at its MQTT client's connection and at its pipe


@dataclass(frozen=True)
class MqttSourceFactory:
    """Builds the worker's MQTT source, in the worker."""

    mqtt: MqttSettings
    subscriptions: tuple[str, ...]
    held_file: Path

    def __call__(self) -> Source:
        return MqttSource(self.mqtt, self.subscriptions, held_file=self.held_file)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything the worker process needs to build its intake. It crosses the process boundary pickled, so
    its callables are module-level functions or instances of module-level classes."""

    source: Callable[[], Source]  # MqttSourceFactory; the benchmark's memory part feeds its own
    decode: DecodeSettings
    pipeline: PipelineSettings


class IngestWorker(ChildProcess):
    """The service's handle on its ingest worker process: a Receiver for `Pipeline`, and the broker link's
    status for the operations endpoint (`connected`, `reconnects`, `wait_connected`)."""

    what = "the ingest worker"
    role = "ingest-worker"

    def __init__(self, spec: WorkerSpec, *, start_timeout_s: float = 60.0, restart: RetryPolicy = RESTART) -> None:
        super().__init__(_worker_main, spec, start_timeout_s=start_timeout_s, restart=restart)
        self._shutdown_s = spec.pipeline.shutdown_drain_s
        self._listeners: list[Listener] = []
        self._connected = threading.Event()
        self._reconnects_before = 0  # reconnections counted by workers that have gone
        self._reconnects = 0

    # --- status ---------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def reconnects(self) -> int:
        return self._reconnects_before + self._reconnects

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- Receiver -------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def stop(self, message: tuple[Any, ...] = ("stop",), wait_s: float | None = None) -> None:
        """Ask the worker to stop (it keeps and acknowledges what it took), wait for it and its last batch."""
        super().stop(message, self._shutdown_s + 30 if wait_s is None else wait_s)
        self._connected.clear()

    # --- the worker's messages ------------------------------------------------------------------------

    def _on_message(self, message: tuple[Any, ...]) -> None:
        if message[0] == "kept":
            deliver(self._listeners, message[1])
        elif message[0] == "broker":
            _, connected, self._reconnects = message
            (self._connected.set if connected else self._connected.clear)()

    def _on_gone(self) -> None:
        self._connected.clear()
        self._reconnects_before += self._reconnects
        self._reconnects = 0


# --- in the worker process --------------------------------------------------------------------------------


def _worker_main(spec: WorkerSpec, link: Link) -> None:
    """The worker's body (ingest/child.py): builds and starts the intake, reports the broker link, and on
    the service's stop (or when it has gone) keeps and acknowledges what it took, and returns."""
    source = spec.source()
    intake = Intake(source, Decoder(spec.decode, time.time_ns), spec.pipeline)
    intake.add_listener(lambda new: _kept(link, new))
    interpreter.settle()  # as the service's process has them (ingest/interpreter.py)
    intake.start()
    link.started()
    status: tuple[bool, int] | None = None
    try:
        while (message := link.receive(_STATUS_EVERY_S)) is None or message[0] != "stop":
            if isinstance(source, BrokerLink) and (source.connected, source.reconnects) != status:
                status = (source.connected, source.reconnects)
                link.send(("broker", *status))
    finally:
        intake.stop()


def _kept(link: Link, new: Sequence[NewValue]) -> None:
    if new:
        link.send(("kept", list(new)))
