"""Part 4, recovery: the time to drain a spool of a million readings into InfluxDB after an outage.

The spool (data_dir/spool.db) is filled through `SpoolDb.keep` with valid air_quality readings decoded by
the service's own Decoder (100 stations, nine values each, batches of 5,000), as the ingest thread keeps
them while the store is down. Then a `Drainer` (the service's settings: batches of 5,000,
`synchronous = "full"`) writes them to an `InfluxDB1Store`; timed from its start until the spool is
empty (the drainer is told to stop at once, and a stopped drainer returns when nothing is left).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.env import HOST, PARK, CpuMeter, OthersMeter, server_pid
from bench.traffic import TZ, reading
from ingest import interpreter
from ingest.decode import Decoder, DecodeSettings
from ingest.drain import Drainer, DrainSettings
from ingest.messages import Message
from ingest.pipeline import RELEASE_SYNCHRONOUS
from ingest.spool import SpoolDb
from ingest.stores.influxdb1 import InfluxDB1Store

BATCH = 5000


def fill(spool_path: Path, rows: int, *, stations: int = 100) -> float:
    """Keep `rows` readings in the spool, as the ingest thread would during a store outage; returns rows/s."""
    decoder = Decoder(DecodeSettings(park=PARK, tz=TZ), time.time_ns)
    db = SpoolDb(spool_path, synchronous="FULL").open()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    started = time.monotonic()
    try:
        for first in range(0, rows, BATCH):
            topics, decoded = [], []
            for i in range(first, min(first + BATCH, rows)):
                topic, payload = reading(i, "json", stations=stations, base=base)
                decoded.append(decoder.decode(Message(topic, payload, time.time_ns())))
                topics.append(topic)
            db.keep(topics, decoded, [], now_ns=time.time_ns())
    finally:
        db.close()
    return rows / (time.monotonic() - started)


def run_once(ctx: Context, run_no: int) -> dict[str, Any]:
    rows = ctx.sizes.spool_rows
    work = ctx.workdir(f"recovery-{run_no}")
    spool_path = work / "data" / "spool.db"
    fill_rate = fill(spool_path, rows)
    database = f"bench_recovery_{run_no}"
    store = InfluxDB1Store(HOST, ctx.influx.port, database)
    spool = SpoolDb(spool_path, synchronous=RELEASE_SYNCHRONOUS).open()  # as the service's drainer has it
    drainer = Drainer(spool, store, DrainSettings(batch_size=BATCH, flush_interval_s=1.0))
    busy = ctx.wait_quiet()
    meter = CpuMeter({"drainer": os.getpid(), "influxd": server_pid(ctx.influx)})  # nothing else runs here
    others = OthersMeter()
    thread = threading.Thread(target=drainer.run, name="drain", daemon=True)
    with interpreter.restored_on_exit():
        interpreter.settle()  # the service's interpreter settings (ingest/interpreter.py), as `parkwatch run`
        meter.start()
        others.start()
        started = time.monotonic()
        drainer.stop()  # a stopped drainer drains what is left and returns when the spool is empty
        thread.start()
        thread.join()
        elapsed = time.monotonic() - started
    cpu, other = meter.stop(), others.stop()
    counters = spool.counters()
    spool.close()
    store.close()
    in_store = ctx.influx.query(database, 'SELECT count("pm25") FROM "air_quality"')
    stored_in_influx = int(in_store[0]["count"]) if in_store else 0
    if counters["stored"] != rows or counters["in_spool"] != 0 or stored_in_influx != rows:
        raise RuntimeError(f"drained {counters}, InfluxDB holds {stored_in_influx} of {rows}")
    ctx.influx.execute(f'DROP DATABASE "{database}"')
    rate = rows / elapsed
    ctx.log(f"  spool drain: {rows:,} readings in {elapsed:.2f} s = {rate:,.0f} readings/s "
            f"(filled at {fill_rate:,.0f}/s; write time in the store {drainer.write_seconds:.2f} s); cpu {cpu}; "
            f"other work {other:.0f} %")
    return {"rows": rows, "seconds": elapsed, "rate": rate, "fill_rate": fill_rate,
            "store_write_seconds": drainer.write_seconds, "cpu_pct": cpu, "machine_busy_pct": busy,
            "others_cpu_pct": other}
