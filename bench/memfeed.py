"""Part 3's child process: the service, built by config.compose.build exactly as `parkwatch run` builds it
except that its MQTT source generates the readings itself: `stations` readings per simulated second for
`seconds` simulated seconds (event times from `seconds` ago up to now), as fast as the intake takes them.
The source lives where the intake does: in the ingest worker process (ingest/worker.py, the default) or
in the service's process (`ingest.worker = "thread"`). This process samples the RSS of the service, its
worker, its drainer and every other process it started, every `sample_every` readings received. It stops early (and
says so) if that RSS passes `rss_cap_mb`: the machine is shared, and a service that grows past ten times
its budget has answered the question.

Publishing 43 million messages through mosquitto would take hours on this machine, so the readings enter
where the broker would hand them over: the source's `take`, called by the intake's own ingest thread.
Everything after the source is the service's: decode and validation, the spool (dedup index included),
acknowledgement (a no-op here), the drainer to InfluxDB, the rules thread (threshold rules and the
air-quality tracker), the alerts layer.

    python -m bench.memfeed PARAMS.json     # prints one JSON line per sample, then {"done": ...}
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import psutil

from bench.feed import Feed
from config.compose import build
from config.settings import settings_from_dict
from ingest import interpreter

MB = 1024 * 1024


def processes() -> list[psutil.Process]:
    """This process and every process it started (the ingest worker, the drainer, multiprocessing's resource
    tracker)."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def rss_mb() -> tuple[float, list[float]]:
    """The RSS of the service's processes together, and of each."""
    each = []
    for process in processes():
        with contextlib.suppress(psutil.NoSuchProcess):
            each.append(process.memory_info().rss / MB)
    return sum(each), each


def peak_rss_mb() -> float:
    """The high-water marks (VmHWM) of the service's processes, added up: an upper bound of their peak
    together."""
    total = 0.0
    for process in processes():
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    return total


def sqlite_memory() -> Callable[[], float | None]:
    """SQLite's own heap in MB, all connections of the process (sqlite3_memory_used), where the sqlite3
    module uses the system's libsqlite3 (Debian's Python and this machine's do); else None. Diagnostic: it
    found the growth of the simulated day in SQLite's cached statements."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):
        return lambda: None
    return lambda: round(lib.sqlite3_memory_used() / MB, 1)


def malloc_heap() -> dict[str, float]:
    """glibc's heap of this process in MB (`interpreter.c_heap`): `malloc_used` held by live allocations
    (SQLite's caches, Python's objects over 512 bytes), `malloc_free` free inside glibc's arenas but not
    given back to the system, `malloc_mmap` in blocks mapped on their own; nothing where the C library is
    not glibc. Python's small objects live in its own arenas, outside these. Diagnostic: it tells a growing
    RSS that holds data from one that holds holes."""
    heap = interpreter.c_heap()
    if heap is None:
        return {}
    return {f"malloc_{'mmap' if key == 'mapped' else key}": round(size / MB, 1) for key, size in heap.items()}


_PYMALLOC_LINES = {"# arenas allocated current": "py_arenas", "# bytes in allocated blocks": "py_used_mb",
                   "# bytes in available blocks": "py_free_mb"}


def pymalloc_stats() -> dict[str, float]:
    """Python's small-object allocator: arenas held (1 MiB each), bytes in live blocks and in free blocks of
    its pools, from `sys._debugmallocstats`, which writes them on file descriptor 2 (so that is pointed at a
    file for the call: a line another thread logs meanwhile lands there too)."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode("ascii", "replace")
    row: dict[str, float] = {}
    for line in text.splitlines():
        head, _, value = line.partition("=")
        key = _PYMALLOC_LINES.get(head.strip())
        if key is not None:
            number = int(value.strip().replace(",", ""))
            row[key] = number if key == "py_arenas" else round(number / MB, 1)
    return row


def python_heap() -> dict[str, float]:
    """Python's own heap: blocks allocated (thousands), its small-object arenas (`pymalloc_stats`), and, when
    the run is traced (PYTHONTRACEMALLOC), what tracemalloc counts live, in MB."""
    row: dict[str, float] = {"py_blocks_k": round(sys.getallocatedblocks() / 1000, 1), **pymalloc_stats()}
    if tracemalloc.is_tracing():
        row["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / MB, 1)
    return row


def main(argv: list[str]) -> int:
    p: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    settings = settings_from_dict(p["settings"], {})
    seconds, every, cap, stations = p["seconds"], p["sample_every"], p["rss_cap_mb"], p["stations"]
    feed = Feed(settings.park.id, stations, seconds, datetime.now(UTC).replace(microsecond=0)
                - timedelta(seconds=seconds))
    with mock.patch("config.compose.MqttSource", lambda *args, **kwargs: feed()), \
            mock.patch("config.compose.MqttSourceFactory", lambda *args, **kwargs: feed):
        service = build(settings)
    interpreter.settle()  # as config.cli.cmd_run does
    # Diagnostic only: batches waiting for the rules thread (the queue is private to RulesRunner).
    rules_queue = getattr(service.rules, "_queue", None)

    def rules_backlog() -> int | None:
        return rules_queue.qsize() if rules_queue is not None else None
    service.start()
    t0 = time.monotonic()
    sqlite_mb = sqlite_memory()  # of this process: the drainer's, the rules' and the counters' connections

    def sample() -> dict[str, Any]:
        c = service.pipeline.counters()
        total, each = rss_mb()
        row = {"readings": c["received"], "sim_s": c["received"] // stations,
               "elapsed_s": round(time.monotonic() - t0, 2), "rss_mb": round(total, 1),
               "rss_each_mb": [round(m, 1) for m in each], "sqlite_mb": sqlite_mb(), "stored": c["stored"],
               "in_spool": c["in_spool"],
               "rules_backlog_batches": rules_backlog(), **malloc_heap(), **python_heap()}
        print(json.dumps(row), flush=True)
        if tracemalloc.is_tracing():  # PYTHONTRACEMALLOC=N: a snapshot per sample, to compare them afterwards
            tracemalloc.take_snapshot().dump(str(Path(argv[0]).parent / f"trace-{row['readings']:012d}.snapshot"))
        return row

    samples = [sample()]
    total = stations * seconds
    next_at = every
    received = 0
    while samples[-1]["rss_mb"] <= cap:
        received = service.pipeline.counters()["received"]
        if received >= next_at:
            samples.append(sample())
            next_at = (received // every + 1) * every
        if received >= total:
            break
        time.sleep(0.05)
    capped = received < total  # stopped by the RSS cap (the last sample may precede the last readings)
    feed_s = time.monotonic() - t0
    settle = time.monotonic() + 600
    while time.monotonic() < settle and not capped and (
            service.pipeline.counters()["in_spool"] > 0 or rules_backlog()):
        time.sleep(0.2)
    time.sleep(1.0)
    samples.append(sample())
    elapsed = time.monotonic() - t0
    counters = service.pipeline.counters()
    peak = peak_rss_mb()
    service.stop()
    files = {f.name: f.stat().st_size for f in settings.data_path.glob("spool.db*")}
    fed = counters["received"]
    print(json.dumps({"done": True, "readings": fed, "sim_s": fed // stations, "capped": capped, "feed_s": feed_s,
                      "elapsed_s": elapsed, "rate": fed / elapsed, "peak_rss_mb": peak,
                      "processes": len(samples[-1]["rss_each_mb"]), "samples": samples, "counters": counters,
                      "spool_files": files}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
