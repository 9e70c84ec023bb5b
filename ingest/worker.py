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

If the worker dies, `IngestWorker` starts another after a pause: what the dead one had taken but not kept
was not acknowledged, so the broker delivers it again. If the service dies, the worker finds its pipe
closed and stops as on `stop`: it takes nothing more, keeps and acknowledges what it took, and exits.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ingest import interpreter
from ingest.decode import Decoder, DecodeSettings, NewValue
from ingest.errors import ParkWatchError
from ingest.interfaces import BrokerLink
from ingest.mqtt import MqttSettings, MqttSource
from ingest.pipeline import Intake, Listener, PipelineSettings, Source, deliver
from ingest.retry import RetryPolicy

log = logging.getLogger(__name__)

_RESTART = RetryPolicy(initial_s=1.0, cap_s=30.0)  # pauses before starting a worker again after one died
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


class IngestWorker:
    """The service's handle on its ingest worker process: a Receiver for `Pipeline`, and the broker link's
    status for the operations endpoint (`connected`, `reconnects`, `wait_connected`)."""

    def __init__(self, spec: WorkerSpec, *, start_timeout_s: float = 60.0, restart: RetryPolicy = _RESTART) -> None:
        self._spec = spec
        self._start_timeout_s = start_timeout_s
        self._restart = restart
        self._listeners: list[Listener] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._reconnects_before = 0  # reconnections counted by workers that have gone
        self._reconnects = 0
        self.restarts = 0

    # --- status ---------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def reconnects(self) -> int:
        return self._reconnects_before + self._reconnects

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # --- Receiver -------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        """Start the worker and wait until its intake runs; raises ParkWatchError if it cannot start."""
        self._launch()
        self._reader = threading.Thread(target=self._read, name="ingest-worker", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        """Ask the worker to stop (it keeps and acknowledges what it took), wait for it and its last batch."""
        self._stopping.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):  # the worker is gone already
                conn.send(("stop",))
        if self._reader is not None:
            self._reader.join(self._spec.pipeline.shutdown_drain_s + 30)
        if self._process is not None:
            _ended(self._process, patience_s=10)

    # --- the worker's life ----------------------------------------------------------------------------

    def _launch(self) -> None:
        # A new interpreter that imports the intake's modules only (not the service's main module, as
        # multiprocessing's spawn would: the worker took 80 MB so, and a resource tracker 13 MB more). It
        # gets its end of a socket pair, then the spec; it logs at the service's level, through the
        # service's handlers (`_dispatch`).
        ours, theirs = socket.socketpair()
        with ours, theirs:
            # (no ";" in the command line: py-spy --subprocesses splits its stacks on it)
            process = subprocess.Popen([sys.executable, "-c", "__import__('ingest.worker').worker.main()",
                                        str(theirs.fileno())], pass_fds=(theirs.fileno(),))
            conn = Connection(ours.detach())
        conn.send((logging.getLogger().getEffectiveLevel(), sys.path, pickle.dumps(self._spec)))
        deadline = time.monotonic() + self._start_timeout_s
        message: tuple[Any, ...] = ("",)
        try:
            while message[0] not in ("started", "failed"):  # the worker may log (and keep) before it says so
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    process.kill()
                    raise ParkWatchError(f"the ingest worker did not start within {self._start_timeout_s:.0f} s")
                message = conn.recv()
                self._dispatch(message)
        except (EOFError, OSError):
            message = ("failed", f"it exited with code {_ended(process)}")
        if message[0] != "started":
            _ended(process)
            conn.close()
            raise ParkWatchError(f"the ingest worker could not start: {message[1]}")
        self._process, self._conn = process, conn
        log.info("ingest worker started (pid %s)", process.pid)

    def _read(self) -> None:
        """The reader thread: hands kept batches to the listeners, tracks the broker status, restarts a
        worker that died unless stopping."""
        attempt = 0
        while True:
            conn = self._conn
            assert conn is not None
            if self._serve(conn):
                return  # stopped as asked
            self._connected.clear()
            self._reconnects_before += self._reconnects
            self._reconnects = 0
            code = _ended(self._process) if self._process is not None else None
            if self._stopping.is_set():
                log.error("the ingest worker ended during shutdown (exit code %s)", code)
                return
            while not self._stopping.is_set():
                pause = self._restart.delay(attempt)
                attempt += 1
                log.critical("the ingest worker died (exit code %s); starting another in %.1f s", code, pause)
                if self._stopping.wait(pause):
                    return
                try:
                    self._launch()
                except ParkWatchError as exc:
                    log.critical("%s", exc)
                    continue
                self.restarts += 1
                if self._stopping.is_set() and self._conn is not None:
                    # stop() came while this worker started, and may have told the one that had died
                    with contextlib.suppress(OSError):
                        self._conn.send(("stop",))
                break

    def _serve(self, conn: Connection) -> bool:
        """Serve one worker until it says it stopped (True) or its pipe closes (False)."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return False
            if self._dispatch(message) == "stopped":
                self._connected.clear()
                return True

    def _dispatch(self, message: tuple[Any, ...]) -> str:
        """Act on one message from the worker; returns its kind."""
        kind: str = message[0]
        if kind == "log":
            record = logging.makeLogRecord(message[1])
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        elif kind == "kept":
            deliver(self._listeners, message[1])
        elif kind == "broker":
            _, connected, self._reconnects = message
            (self._connected.set if connected else self._connected.clear)()
        return kind


def _ended(process: subprocess.Popen[bytes], patience_s: float = 5) -> int:
    """The exit code of a worker that was told to stop or whose pipe has closed; killed if it lingers."""
    try:
        return process.wait(patience_s)
    except subprocess.TimeoutExpired:
        log.error("the ingest worker did not stop; killing it")
        process.kill()
        return process.wait(5)


# --- in the worker process --------------------------------------------------------------------------------


def main() -> None:
    """The worker's entry point (`IngestWorker._launch`): argv[1] is its end of the socket pair."""
    conn = Connection(int(sys.argv[1]))
    level, path, spec = conn.recv()
    sys.path[:] = path  # where the service finds its modules: the spec may name any of them
    _worker_main(spec, conn, level)


def _worker_main(pickled_spec: bytes, conn: Connection, log_level: int) -> None:
    # The service decides when the worker stops. Ctrl-C reaches the whole process group, and systemd's
    # stop sends SIGTERM to every process of the unit: the worker would die with a batch taken but not
    # kept (safe, it is not acknowledged, but noisy). It goes on until the service says stop or goes away.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    link = _Link(conn)
    root = logging.getLogger()
    root.handlers[:] = [_Forwarding(link)]
    root.setLevel(log_level)
    try:
        spec: WorkerSpec = pickle.loads(pickled_spec)
        source = spec.source()
        intake = Intake(source, Decoder(spec.decode, time.time_ns), spec.pipeline)
        intake.add_listener(link.kept)
        interpreter.settle()  # as the service's process has them (ingest/interpreter.py)
        intake.start()
    except Exception as exc:  # reported to the service, which refuses to start with it
        link.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    link.send(("started",))
    try:
        while not link.stop_asked(_STATUS_EVERY_S):
            if isinstance(source, BrokerLink):
                link.status(source.connected, source.reconnects)
    finally:
        intake.stop()
        link.send(("stopped",))


class _Link:
    """The worker's end of the pipe. Sends come from the ingest thread (kept batches) and the main thread
    (status), so they take turns; a service that has gone is noticed, not reported per batch."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._status: tuple[bool, int] | None = None
        self._gone = False

    def send(self, message: tuple[Any, ...]) -> bool:
        """Send; False if the service has gone (noticed once, logged once)."""
        with self._lock:
            if self._gone:
                return False
            try:
                self._conn.send(message)
                return True
            except OSError:
                self._gone = True
        log.warning("the service has gone; the ingest worker stops")  # outside the lock: logging sends too
        return False

    def kept(self, new: Sequence[NewValue]) -> None:
        if new:
            self.send(("kept", list(new)))

    def status(self, connected: bool, reconnects: int) -> None:
        if (connected, reconnects) != self._status:
            self._status = (connected, reconnects)
            self.send(("broker", connected, reconnects))

    def stop_asked(self, timeout: float) -> bool:
        """Wait up to `timeout` for the service's stop; True also when the service has gone."""
        if self._gone:
            return True
        try:
            return bool(self._conn.poll(timeout)) and self._conn.recv()[0] == "stop"
        except (EOFError, OSError):
            self._gone = True
            return True


class _Forwarding(logging.Handler):
    """The worker's log handler: records go to the service, which hands them to its own handlers (format,
    level, destination: one log for the two processes); to stderr once the service has gone."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self._link = link
        self._fallback = logging.StreamHandler(sys.stderr)
        self._fallback.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(processName)s %(threadName)s "
                                                      "%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(record.__dict__)
            if record.exc_info and not record.exc_text:
                fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
            fields.update(msg=record.getMessage(), args=None, exc_info=None)  # the text, not the objects
            if not self._link.send(("log", fields)):
                self._fallback.handle(record)
        except Exception:
            self.handleError(record)
