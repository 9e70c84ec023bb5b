"""Where the rules' state waits out a restart: one JSON file, replaced atomically (temporary file, fsync,
rename), so a crash leaves the last complete state, never half of one.

The rules thread saves every `save_every_s` (rules/runner.py). With 9 hours of averages for 500 stations
the state is about 1.5 MB, and a save done all on the rules thread (snapshot, `json.dump`, whose
streaming path is the pure-Python encoder, and fsync) held it 273 - 406 ms (`python -m bench.save_state`):
every alert raised meanwhile waited, and the ingest side behind it. So the rules thread only takes the
snapshot, whose containers are its own (the rules' `snapshot` contract, rules/interfaces.py), and hands
it over; this module's writer thread encodes, writes and fsyncs it. The latest state wins: one that
arrives while an older one waits to be written replaces it. Encoding goes in pieces (`_GROUP` stations'
averages, a rule's sources): a C call cannot be interrupted, so no single one holds the GIL for long
while the rules thread waits for it.

A save that fails (disk full, no permission, a state that cannot be encoded) is logged and tried again
with the next state; the rules keep running without it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_NESTED_DEPTH = 4  # dict levels split into pieces: {"engine": {"rules": {name: {station: ...}}}}
_GROUP = 16  # members of the innermost split level encoded per call (about 0.8 ms of GIL for 16 stations)


def encode(state: Mapping[str, Any], *, depth: int = _NESTED_DEPTH) -> str:
    """`json.dumps(state, ensure_ascii=False)`, up to spacing, built from pieces: dicts nested up to
    `depth` levels are taken apart, and the members of the innermost of them encoded `_GROUP` at a time.
    One call per member cost a third more than a single `json.dumps` (3,019 calls for 500 stations); 16
    at a time cost 3 % more than 64, whose calls held the GIL about 3 ms each."""
    parts: list[str] = []
    _encode_into(parts, state, depth)
    return "".join(parts)


def _encode_into(parts: list[str], value: Any, depth: int) -> None:
    if depth <= 0 or not isinstance(value, dict) or not value or not all(isinstance(k, str) for k in value):
        parts.append(json.dumps(value, ensure_ascii=False))  # json's own way with other keys, NaN, ...
        return
    if depth == 1:
        items = list(value.items())
        groups = [json.dumps(dict(items[i : i + _GROUP]), ensure_ascii=False)[1:-1]
                  for i in range(0, len(items), _GROUP)]
        parts.append("{" + ",".join(groups) + "}")
        return
    sep = "{"
    for key, member in value.items():
        parts.append(sep + json.dumps(key, ensure_ascii=False) + ":")
        _encode_into(parts, member, depth - 1)
        sep = ","
    parts.append("}")


class StateFile:
    """The rules' state file: `load` at start, `save_later` while running, `save` (and `close`) at stop."""

    def __init__(self, path: Path, *, fsync: Callable[[int], None] = os.fsync) -> None:
        self._path = path
        self._fsync = fsync
        self._cond = threading.Condition()
        self._pending: Mapping[str, Any] | None = None
        self._writing = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def load(self) -> dict[str, Any] | None:
        """The saved state; None if there is none or it cannot be read (logged: the rules start fresh)."""
        try:
            state = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("rule state %s unreadable, starting fresh: %s", self._path, exc)
            return None
        if not isinstance(state, dict):
            log.warning("rule state %s is not a JSON object, starting fresh", self._path)
            return None
        return state

    def save_later(self, state: Mapping[str, Any]) -> None:
        """Encode and write `state` on the writer thread; it replaces a state still waiting there. The
        caller hands `state` over: nothing in it may change afterwards."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the state file is closed")
            self._pending = state
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rules-state", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def save(self, state: Mapping[str, Any]) -> bool:
        """Write `state` now, on this thread, after any state still waiting (which it supersedes). True if
        it was written."""
        text = encode(state)
        with self._cond:
            self._pending = None
            self._cond.wait_for(lambda: not self._writing)
            self._writing = True
        return self._write_claimed(text)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until no state waits to be written; False if `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._writing, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what waits, then stop the writer thread."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: (self._pending is not None and not self._writing) or self._closed)
                if self._pending is None:
                    return  # closed, nothing waiting
                state, self._pending, self._writing = self._pending, None, True
            try:
                text = encode(state)
            except Exception:  # a rule's snapshot that is not JSON-safe: a bug, but not the end of the rules
                log.exception("cannot save the rule state, it cannot be encoded; the rules go on, the next save "
                              "tries again")
                self._release()
                continue
            self._write_claimed(text)

    def _release(self) -> None:
        with self._cond:
            self._writing = False
            self._cond.notify_all()

    def _write_claimed(self, text: str) -> bool:
        """Write `text` with the writing slot claimed (`_writing`), and give the slot back."""
        try:
            return self._write(text)
        finally:
            self._release()

    def _write(self, text: str) -> bool:
        tmp = self._path.with_suffix(".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                self._fsync(fh.fileno())
            os.replace(tmp, self._path)
            _sync_directory(self._path.parent)  # the rename itself survives a power cut
            return True
        except OSError as exc:
            log.error("cannot save the rule state to %s (%s); the rules go on, the next save tries again",
                      self._path, exc)
            return False


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
