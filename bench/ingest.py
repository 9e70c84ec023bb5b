"""Part 1, ingest throughput: readings/s from the broker to the store, on a backlog the broker queued for
the service's persistent session, against the reference limit of a subscriber that only counts.

For each format (JSON readings, HJ 212 CN 2011 frames) and for the reference, on a fresh mosquitto:
start the client once to create its persistent session, stop it, publish the backlog (in-flight window
bounded), wait for a quiet machine, start the client again and time from its CONNACK (the service's
"connected ... session resumed" log line) until the last reading is stored in InfluxDB (`stored` of
the spool's counters reaches the backlog; for the reference: until it has counted the backlog).
The service runs with rules on (bench.env.rules_toml), acknowledgements after the spool commit,
`synchronous = "full"`, and InfluxDB 1.6.7 as its store.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.env import (
    PYTHON,
    REPO,
    CpuMeter,
    MosquittoServer,
    OthersMeter,
    ServiceProcess,
    child_env,
    rules_toml,
    server_pid,
    service_config,
    spool_counters,
    tracker_available,
)
from bench.traffic import BoundedPublisher, Format, Item, backlog

POLL_S = 0.05
STALL_S = 120.0  # no progress for this long: the measurement failed


def items_for(ctx: Context, fmt: Format) -> list[Item]:
    key = ("backlog", fmt, ctx.sizes.ingest_readings)
    if key not in ctx.cache:
        ctx.cache[key] = backlog(ctx.sizes.ingest_readings, fmt, stations=ctx.sizes.ingest_stations,
                                 base=ctx.cache.setdefault("base", _base()))
    items: list[Item] = ctx.cache[key]
    return items


def _base() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def run_once(ctx: Context, run_no: int) -> dict[str, Any]:
    """One run: the reference, then the service on JSON, then on HJ 212; with the ratios."""
    ref = measure_reference(ctx, run_no)
    out: dict[str, Any] = {"reference": ref}
    for fmt in ("json", "hj212"):
        out[fmt] = measure_service(ctx, fmt, run_no)  # type: ignore[arg-type]
        out[f"ratio_{fmt}"] = out[fmt]["rate"] / ref["rate"]
        out[f"budget_{fmt}"] = cpu_budget(ref, out[fmt], ctx.log)
    return out


def cpu_budget(ref: dict[str, Any], svc: dict[str, Any], log: Callable[[str], None]) -> dict[str, float]:
    """Whether the target is within this machine's reach: the CPU every reading costs (the service, its
    ingest worker and its drainer, mosquitto and influxd together, from their kernel accounting), and how
    many cores the target rate (75 % of the reference) would take at that cost. Above the machine's core
    count the target cannot be met without making each reading cheaper, however the work were spread over
    threads or processes."""
    per_reading_us = sum(svc["cpu_pct"].values()) / 100 / svc["rate"] * 1e6
    ours = ("service", "worker", "drainer")  # the service's processes (bench.env.ServiceProcess.processes)
    service_us = sum(svc["cpu_pct"].get(name, 0.0) for name in ours) / 100 / svc["rate"] * 1e6
    ref_us = sum(ref["cpu_pct"].values()) / 100 / ref["rate"] * 1e6
    cores = 0.75 * ref["rate"] * per_reading_us / 1e6
    cpus = os.cpu_count() or 1
    log(f"    CPU per reading: service {service_us:.0f} us, with mosquitto and influxd {per_reading_us:.0f} us "
        f"(reference {ref_us:.0f} us per message); at 75 % of the reference ({0.75 * ref['rate']:,.0f}/s) that "
        f"is {cores:.2f} cores of this machine's {cpus}")
    return {"service_us": service_us, "total_us": per_reading_us, "reference_us": ref_us,
            "cores_at_target": cores, "cpus": cpus}


def publish_backlog(port: int, items: list[Item]) -> float:
    """Publish the backlog and wait for every PUBACK; returns the publishing rate."""
    pub = BoundedPublisher(port, window=1000)
    started = time.monotonic()
    pub.publish_all(items)
    pub.wait_acked()
    elapsed = time.monotonic() - started
    pub.close()
    return len(items) / elapsed


def measure_reference(ctx: Context, run_no: int) -> dict[str, Any]:
    items = items_for(ctx, "json")
    n = len(items)
    work = ctx.workdir(f"ingest-ref-{run_no}")
    client_id = f"bench-ref-{run_no}"
    with MosquittoServer(work / "mosquitto", persistence=False) as mq:
        base = [PYTHON, "-m", "bench.refsub", "--port", str(mq.port), "--client-id", client_id]
        subprocess.run([*base, "--create"], check=True, cwd=REPO, env=child_env(), timeout=60,
                       stdout=subprocess.DEVNULL)
        pub_rate = publish_backlog(mq.port, items)
        busy = ctx.wait_quiet()
        proc = subprocess.Popen([*base, "--count", str(n)], cwd=REPO, env=child_env(), stdout=subprocess.PIPE)
        meter, others = CpuMeter({"client": proc.pid, "mosquitto": server_pid(mq)}), OthersMeter()
        meter.start()
        others.start()
        out, _ = proc.communicate(timeout=STALL_S + n / 1000)
        cpu, other = meter.stop(), others.stop()
    result = json.loads(out)
    if result["count"] < n or not result["session_present"]:
        raise RuntimeError(f"reference subscriber got {result['count']} of {n} (session {result['session_present']})")
    elapsed = result["done_at"] - result["connected_at"]
    rate = n / elapsed
    cpu["client"] = round(100 * result["cpu_s"] / elapsed, 1)  # measured by the client itself: it has exited
    ctx.log(f"  reference (counting subscriber): {n:,} in {elapsed:.2f} s = {rate:,.0f} msg/s; cpu {cpu}; "
            f"other work {other:.0f} %")
    return {"n": n, "seconds": elapsed, "rate": rate, "cpu_pct": cpu, "publish_rate": pub_rate,
            "machine_busy_pct": busy, "others_cpu_pct": other}


def measure_service(ctx: Context, fmt: Format, run_no: int) -> dict[str, Any]:
    items = items_for(ctx, fmt)
    n = len(items)
    work = ctx.workdir(f"ingest-{fmt}-{run_no}")
    database = f"bench_ingest_{fmt}_{run_no}"
    rules = work / "rules.toml"
    rules.write_text(rules_toml(), encoding="utf-8")
    with MosquittoServer(work / "mosquitto", persistence=False) as mq:
        config = service_config(work / "parkwatch.toml", data_dir=work / "data", mqtt_port=mq.port,
                                store_url=ctx.influx.url_for(database), client_id=f"bench-svc-{fmt}-{run_no}",
                                rules_file=rules)
        svc = ServiceProcess(config, work)
        try:
            svc.start(wait_for="subscribed to")
            svc.terminate()
            pub_rate = publish_backlog(mq.port, items)
            busy = ctx.wait_quiet()
            connected_at = svc.start(wait_for="session resumed")
            meter = CpuMeter({**svc.processes(), "mosquitto": server_pid(mq), "influxd": server_pid(ctx.influx)})
            others = OthersMeter()
            meter.start()
            others.start()
            received_at, stored_at = wait_stored(work / "data" / "spool.db", n)
            cpu, other = meter.stop(), others.stop()
            final = svc.terminate()
        finally:
            svc.kill()
    in_store = ctx.influx.query(database, 'SELECT count("pm25") FROM "air_quality"')
    stored_in_influx = int(in_store[0]["count"]) if in_store else 0
    if stored_in_influx != n or final.get("deadlettered", 0):
        raise RuntimeError(f"{fmt}: InfluxDB holds {stored_in_influx} of {n}; final counters {final}")
    elapsed = stored_at - connected_at
    rate = n / elapsed
    ctx.log(f"  service, {fmt}: {n:,} stored in {elapsed:.2f} s = {rate:,.0f} readings/s "
            f"(acknowledged after {received_at - connected_at:.2f} s); cpu {cpu}; other work {other:.0f} %")
    return {"n": n, "seconds": elapsed, "rate": rate, "kept_seconds": received_at - connected_at,
            "kept_rate": n / (received_at - connected_at), "cpu_pct": cpu, "publish_rate": pub_rate,
            "payload_bytes": sum(len(p) for _, p in items) / n, "final_counters": final,
            "tracker": tracker_available(), "machine_busy_pct": busy, "others_cpu_pct": other}


def wait_stored(spool: Path, n: int) -> tuple[float, float]:
    """Poll the spool's counters until `stored` reaches n; returns when `received` and `stored` did."""
    received_at = 0.0
    last, last_change = -1, time.monotonic()
    while True:
        c = spool_counters(spool)
        now = time.time()
        if not received_at and c.get("received", 0) >= n:
            received_at = now
        if c.get("stored", 0) >= n:
            return received_at or now, now
        progress = c.get("received", 0) + c.get("stored", 0)
        if progress != last:
            last, last_change = progress, time.monotonic()
        elif time.monotonic() - last_change > STALL_S:
            raise RuntimeError(f"no progress for {STALL_S:.0f} s: {c}")
        time.sleep(POLL_S)
