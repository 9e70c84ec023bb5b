"""Part 3, memory: peak RSS of the service with `memory_stations` stations at one reading per second for
one simulated day, sampled every `memory_sample_every` readings, and whether it grows. A run stops
early if the RSS passes `memory_cap_mb` (the result says how much of the day it covered).

The readings go straight into the service's pipeline in a child process (bench.memfeed says why and
how); the store is the shared InfluxDB, and a mosquitto runs for the alerts layer's MQTT link. Growth is
the last sample minus the first sample at or after 10 % of the day (start-up and the first batches
excluded). The RSS is that of all the service's processes together (the service, its ingest worker, its
drainer and multiprocessing's resource tracker); `peak_rss_mb` adds up their high-water marks (VmHWM).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from bench.context import Context
from bench.env import PYTHON, REPO, MosquittoServer, OthersMeter, child_env, rules_toml

TIMEOUT_S = 6 * 3600


def run_once(ctx: Context, run_no: int) -> dict[str, Any]:
    sizes = ctx.sizes
    work = ctx.workdir(f"memory-{run_no}")
    rules = work / "rules.toml"
    rules.write_text(rules_toml(), encoding="utf-8")
    database = f"bench_memory_{run_no}"
    with MosquittoServer(work / "mosquitto", persistence=False) as mq:
        params = {
            "settings": {
                "data_dir": str(work / "data"),
                "park": {"id": "demo"},
                "mqtt": {"url": mq.url, "client_id": f"bench-memory-{run_no}"},
                "store": {"url": ctx.influx.url_for(database)},
                "spool": {"synchronous": "full"},
                "rules": {"file": str(rules)},
                "http": {"listen": "127.0.0.1:0"},
            },
            "stations": sizes.memory_stations,
            "seconds": sizes.memory_seconds,
            "sample_every": sizes.memory_sample_every,
            "rss_cap_mb": sizes.memory_cap_mb,
        }
        (work / "params.json").write_text(json.dumps(params), encoding="utf-8")
        busy = ctx.wait_quiet()
        total = sizes.memory_stations * sizes.memory_seconds
        ctx.log(f"  feeding {total:,} readings ({sizes.memory_stations} stations x {sizes.memory_seconds:,} s)")
        others = OthersMeter()
        others.start()
        proc = subprocess.Popen([PYTHON, "-m", "bench.memfeed", str(work / "params.json")], cwd=REPO,
                                env=child_env(), stdout=subprocess.PIPE, stderr=(work / "memfeed.log").open("wb"),
                                text=True)
        assert proc.stdout is not None
        done: dict[str, Any] = {}
        for line in proc.stdout:
            row = json.loads(line)
            if row.get("done"):
                done = row
            else:
                ctx.log(f"    {row['readings']:>12,} readings  sim {row['sim_s'] / 3600:5.2f} h  "
                        f"RSS {row['rss_mb']:7.1f} MB  SQLite {row.get('sqlite_mb')} MB  "
                        f"malloc used/free {row.get('malloc_used')}/{row.get('malloc_free')} MB  "
                        f"Python blocks {row.get('py_blocks_k')} k, arenas {row.get('py_arenas')} "
                        f"({row.get('py_used_mb')} MB used, {row.get('py_free_mb')} MB free)  "
                        f"rules backlog {row['rules_backlog_batches']} batches  "
                        f"({row['elapsed_s']:,.0f} s, stored {row['stored']:,})")
        code = proc.wait(TIMEOUT_S)
        other = others.stop()
    if code != 0 or not done:
        raise RuntimeError(f"memfeed exited {code}; see {work / 'memfeed.log'}")
    samples = done["samples"]
    growth, base = growth_mb(samples, done["readings"])
    result = {"readings": done["readings"], "stations": sizes.memory_stations, "sim_seconds": done["sim_s"],
              "sim_hours": done["sim_s"] / 3600, "capped": done["capped"],
              "cap_mb": sizes.memory_cap_mb, "peak_rss_mb": done["peak_rss_mb"], "growth_mb": growth,
              "growth_from_readings": base, "rate": done["rate"], "elapsed_s": done["elapsed_s"],
              "spool_files": done["spool_files"], "counters": done["counters"], "samples": samples,
              "machine_busy_pct": busy, "others_cpu_pct": other, "path": "generated in the intake's source",
              "processes": done.get("processes")}
    stopped = (f"STOPPED at the {sizes.memory_cap_mb:,.0f} MB cap after {done['sim_s'] / 3600:.2f} simulated hours; "
               if done["capped"] else "")
    ctx.log(f"  memory: {stopped}peak RSS {result['peak_rss_mb']:.1f} MB, growth after the first 10 % "
            f"{growth:+.1f} MB; {done['readings']:,} readings at {done['rate']:,.0f}/s; spool files "
            + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in done["spool_files"].items())
            + f"; other work {other:.0f} %")
    try:
        ctx.influx.execute(f'DROP DATABASE "{database}"')
    except RuntimeError as exc:
        ctx.log(f"  (could not drop {database}: {exc})")
    return result


def growth_mb(samples: list[dict[str, Any]], total: int) -> tuple[float, int]:
    """Last RSS sample minus the first at or after 10 % of the readings fed; and where that one was taken."""
    later = [s for s in samples if s["readings"] >= 0.1 * total]
    first = later[0] if later else samples[0]
    return samples[-1]["rss_mb"] - first["rss_mb"], first["readings"]
