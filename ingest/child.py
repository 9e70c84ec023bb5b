"""A part of the service in a process of its own: started, logged, restarted and stopped by the service.

    service process                                    child process
    ChildProcess --- spec, then messages ---------->   main() -> run(spec, link)
        _on_message <-- started, log, its own kinds --     link.send(...)

The ingest worker (ingest/worker.py) and the drainer (ingest/drain_process.py) run so. Python runs one
thread at a time per process: a part that needs a core of its own gets a process. The spool is what they
share; the pipe carries only what cannot wait for the spool (kept values for the rules, wake-ups, status).

The child is a new interpreter that imports what its spec names only (not the service's main module, as
multiprocessing's spawn would: the worker took 80 MB so, and a resource tracker 13 MB more). It gets its
end of a socket pair, then its spec; it logs at the service's level, through the service's handlers. If
it dies, the service starts another after a pause (backing off); if the service dies, the child finds its
pipe closed and stops as on ("stop",).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ingest.errors import ParkWatchError
from ingest.retry import RetryPolicy

log = logging.getLogger(__name__)

RESTART = RetryPolicy(initial_s=1.0, cap_s=30.0)  # pauses before starting a child again after one died
Run = Callable[[Any, "Link"], None]
"""The child's body, a module-level function: builds its part from the spec, says `link.started()`, serves
until the service says stop (or goes away), then stops its part. What it raises before `started` is
reported to the service, which refuses to start with it; after, the child dies and is replaced."""


class ChildProcess:
    """The service's handle on one child process. Subclasses name the child and act on its messages."""

    what = "child process"  # in log lines and errors: "the ingest worker", "the drainer"
    role = "child"  # on the child's command line, where ps, py-spy and the benchmark tell the children apart

    def __init__(self, run: Run, spec: Any, *, start_timeout_s: float = 60.0, restart: RetryPolicy = RESTART) -> None:
        self._payload = pickle.dumps((run, spec))
        self._start_timeout_s = start_timeout_s
        self._restart = restart
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child and wait until it runs; raises ParkWatchError if it cannot start."""
        self._launch()
        self._reader = threading.Thread(target=self._read, name=self.role, daemon=True)
        self._reader.start()

    def send(self, message: tuple[Any, ...]) -> bool:
        """Send to the running child; False if there is none (it died, a replacement is on its way)."""
        conn = self._conn
        if conn is None:
            return False
        with self._send_lock:
            try:
                conn.send(message)
                return True
            except OSError:
                return False

    def stop(self, message: tuple[Any, ...] = ("stop",), wait_s: float = 30.0) -> None:
        """Ask the child to stop with `message`, wait up to `wait_s` for it to say it stopped, and for it to end."""
        self._stopping.set()
        self.send(message)
        if self._reader is not None:
            self._reader.join(wait_s)
        if self._process is not None:
            _ended(self._process, self.what, patience_s=10)

    # --- for subclasses -------------------------------------------------------------------------------

    def _on_message(self, message: tuple[Any, ...]) -> None:
        """A message of the child's own kinds (not log, started, failed, stopped)."""

    def _on_gone(self) -> None:
        """The child died (or could not be reached); a replacement may follow."""

    # --- the child's life -----------------------------------------------------------------------------

    def _launch(self) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            # (no ";" in the command line: py-spy --subprocesses splits its stacks on it)
            process = subprocess.Popen([sys.executable, "-c", "__import__('ingest.child').child.main()",
                                        str(theirs.fileno()), self.role], pass_fds=(theirs.fileno(),))
            conn = Connection(ours.detach())
        conn.send((logging.getLogger().getEffectiveLevel(), sys.path, self._payload))
        deadline = time.monotonic() + self._start_timeout_s
        message: tuple[Any, ...] = ("",)
        try:
            while message[0] not in ("started", "failed"):  # the child may log (and work) before it says so
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    process.kill()
                    raise ParkWatchError(f"{self.what} did not start within {self._start_timeout_s:.0f} s")
                message = conn.recv()
                self._dispatch(message)
        except (EOFError, OSError):
            message = ("failed", f"it exited with code {_ended(process, self.what)}")
        if message[0] != "started":
            _ended(process, self.what)
            conn.close()
            raise ParkWatchError(f"{self.what} could not start: {message[1]}")
        self._process, self._conn = process, conn
        log.info("%s started (pid %s)", self.what, process.pid)

    def _read(self) -> None:
        """The reader thread: dispatches the child's messages, and restarts a child that died unless stopping."""
        attempt = 0
        while True:
            conn = self._conn
            assert conn is not None
            if self._serve(conn):
                return  # stopped as asked
            self._conn = None
            self._on_gone()
            code = _ended(self._process, self.what) if self._process is not None else None
            if self._stopping.is_set():
                log.error("%s ended during shutdown (exit code %s)", self.what, code)
                return
            while not self._stopping.is_set():
                pause = self._restart.delay(attempt)
                attempt += 1
                log.critical("%s died (exit code %s); starting another in %.1f s", self.what, code, pause)
                if self._stopping.wait(pause):
                    return
                try:
                    self._launch()
                except ParkWatchError as exc:
                    log.critical("%s", exc)
                    continue
                self.restarts += 1
                if self._stopping.is_set():
                    # stop() came while this child started, and may have told the one that had died
                    self.send(("stop",))
                break

    def _serve(self, conn: Connection) -> bool:
        """Serve one child until it says it stopped (True) or its pipe closes (False)."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return False
            if self._dispatch(message) == "stopped":
                return True

    def _dispatch(self, message: tuple[Any, ...]) -> str:
        """Act on one message from the child; returns its kind."""
        kind: str = message[0]
        if kind == "log":
            record = logging.makeLogRecord(message[1])
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        elif kind not in ("started", "failed", "stopped"):
            self._on_message(message)
        return kind


def _ended(process: subprocess.Popen[bytes], what: str, patience_s: float = 5) -> int:
    """The exit code of a child that was told to stop or whose pipe has closed; killed if it lingers."""
    try:
        return process.wait(patience_s)
    except subprocess.TimeoutExpired:
        log.error("%s did not stop; killing it", what)
        process.kill()
        return process.wait(5)


# --- in the child process ---------------------------------------------------------------------------------


def main() -> None:
    """The child's entry point (`ChildProcess._launch`): argv[1] is its end of the socket pair, argv[2] its role."""
    conn = Connection(int(sys.argv[1]))
    level, path, payload = conn.recv()
    sys.path[:] = path  # where the service finds its modules: the spec may name any of them
    _child_main(payload, conn, level)


def _child_main(payload: bytes, conn: Connection, log_level: int) -> None:
    # The service decides when the child stops. Ctrl-C reaches the whole process group, and systemd's stop
    # sends SIGTERM to every process of the unit: the child would die in the middle of its work (safe,
    # nothing it did is lost, but noisy). It goes on until the service says stop or goes away.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    link = Link(conn)
    root = logging.getLogger()
    root.handlers[:] = [_Forwarding(link)]
    root.setLevel(log_level)
    try:
        run, spec = pickle.loads(payload)
        run(spec, link)
    except Exception as exc:
        if not link.has_started:  # reported to the service, which refuses to start with it
            link.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    link.send(("stopped",))


class Link:
    """The child's end of the pipe. Sends may come from any of its threads, so they take turns; a service
    that has gone is noticed, not reported per message."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._gone = False
        self.has_started = False

    def started(self) -> None:
        self.has_started = True
        self.send(("started",))

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
        log.warning("the service has gone; process %d stops", os.getpid())  # outside the lock: logging sends too
        return False

    def receive(self, timeout: float) -> tuple[Any, ...] | None:
        """The service's next message within `timeout`, or None; ("stop",) once the service has gone."""
        if self._gone:
            return ("stop",)
        try:
            return self._conn.recv() if self._conn.poll(timeout) else None
        except (EOFError, OSError):
            self._gone = True
            return ("stop",)


class _Forwarding(logging.Handler):
    """The child's log handler: records go to the service, which hands them to its own handlers (format,
    level, destination: one log for all the processes); to stderr once the service has gone."""

    def __init__(self, link: Link) -> None:
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
