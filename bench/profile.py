"""Where the service's time goes while it ingests a backlog: py-spy on the service process, aggregated by
thread and by function.

    python -m bench.profile [--format json|hj212] [--readings 200000] [--duration 20] [--rate 200] [--gil]

Sets up part 1's measurement (fresh mosquitto and InfluxDB, persistent session, backlog queued by the
broker), starts the service, and once it is connected runs
``py-spy record -f raw -r RATE --threads --pid PID -d DURATION`` on it (with ``--gil``: only samples of the
thread holding the GIL). Without ``--gil`` py-spy leaves out idle threads (waiting on a lock, the GIL
included, or in a blocking call), so a thread's samples / (rate x duration) is the share of the wall time
it was running. The report gives, per thread: that share, its top functions by self time (the frame on
top of the stack) and by inclusive time (anywhere on the stack); it is printed and written to
bench/results/profile-FORMAT[-gil].txt, with the raw py-spy output beside it (.raw).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import alert_latency, ingest
from bench.context import Context, Sizes
from bench.env import (
    REPO,
    InfluxDB1Server,
    MosquittoServer,
    ServiceProcess,
    rules_toml,
    service_config,
    spool_counters,
)
from bench.traffic import Format

RESULTS = REPO / "bench" / "results"
_THREAD = re.compile(r"^thread \((?P<tid>[^)]*)\)(?::\s*(?P<name>.*))?$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass
class ThreadProfile:
    name: str
    tids: set[str] = field(default_factory=set)
    samples: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    self_lines: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    cpu_pct: float | None = None  # of one core, from the kernel's accounting of the thread


def short_path(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", f"{REPO}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def function_of(frame: str, *, line: bool = False) -> str:
    """'Pipeline.process (/work/main/ingest/pipeline.py:140)' -> 'Pipeline.process (ingest/pipeline.py)'."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    where = short_path(m.group("file")) + (f":{m.group('line')}" if line and m.group("line") else "")
    return f"{m.group('func')} ({where})"


def thread_of(head: str) -> tuple[str, str]:
    """'thread (1234): ingest' -> ('1234', 'ingest'); a thread py-spy saw before it had a name: its id."""
    m = _THREAD.match(head)
    if not m:
        return head, head
    tid = m.group("tid")
    return tid, (m.group("name") or "").strip() or f"thread {tid}"


def aggregate(raw: Path) -> dict[str, ThreadProfile]:
    """Per thread name: samples, self time and inclusive time per function, from py-spy's raw output."""
    threads: dict[str, ThreadProfile] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        processes = 0  # with --subprocesses each stack starts with its process and its parents
        child = ""
        while parts and parts[0].startswith("process "):
            parts, processes, child = parts[1:], processes + 1, parts[0]
        if not parts:
            continue
        tid, name = thread_of(parts[0])
        if processes > 1:
            # a thread of a child process (ingest/child.py): the ingest worker's, or the drainer's
            name = f"{'drainer' if 'drainer' in child else 'worker'}: {name}"
        frames = [function_of(f) for f in parts[1:]]
        prof = threads.setdefault(name, ThreadProfile(name))
        prof.tids.add(tid)
        n = int(count)
        prof.samples += n
        prof.self_time[frames[-1] if frames else "(no Python frame)"] += n
        prof.self_lines[function_of(parts[-1], line=True) if frames else "(no Python frame)"] += n
        for func in set(frames):
            prof.inclusive[func] += n
    return threads


def add_cpu(threads: dict[str, ThreadProfile], cpu_s: dict[str, float], wall_s: float) -> None:
    """Attach each thread's CPU use (seconds per thread id, from the kernel) as % of one core."""
    for prof in threads.values():
        used = [cpu_s[t] for t in prof.tids if t in cpu_s]
        prof.cpu_pct = 100 * sum(used) / wall_s if used else None


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of every thread of a process, by thread id."""
    return {str(t.id): t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def report(threads: dict[str, ThreadProfile], *, slots: int, top: int, title: str, gil: bool) -> str:
    total = sum(t.samples for t in threads.values())
    cpu_total = sum(t.cpu_pct or 0 for t in threads.values())
    what = "holding the GIL" if gil else "not idle in py-spy's view (running, or blocked in a C call)"
    lines = [title, f"samples: {total:,}; {slots:,} sampling slots per thread; process CPU {cpu_total:.0f} % of a core"
             f" (kernel accounting, summed over threads)", f"per thread: samples {what}, as % of wall time"]
    for prof in sorted(threads.values(), key=lambda t: -(t.cpu_pct or 0) - t.samples / slots):
        lines.append("")
        cpu = "?" if prof.cpu_pct is None else f"{prof.cpu_pct:.1f} %"
        lines.append(f"== thread {prof.name}: CPU {cpu} of a core; {prof.samples:,} samples = "
                     f"{100 * prof.samples / slots:.1f} % of wall time, {100 * prof.samples / max(total, 1):.1f} % "
                     "of all samples")
        lines.append("   self time (share of this thread's samples), with its hottest lines:")
        for func, n in prof.self_time.most_common(top):
            lines.append(f"   {100 * n / prof.samples:5.1f} %  {func}")
            hot = [(ln, k) for ln, k in prof.self_lines.most_common() if ln.split(" (")[0] == func.split(" (")[0]]
            lines += [f"              {100 * k / prof.samples:5.1f} % line {ln.rsplit(':', 1)[-1].rstrip(')')}"
                      for ln, k in hot[:3] if len(hot) > 1 and k / prof.samples >= 0.02]
        lines.append("   inclusive (share of this thread's samples):")
        lines += [f"   {100 * n / prof.samples:5.1f} %  {func}" for func, n in prof.inclusive.most_common(top)]
    return "\n".join(lines)


def profile(fmt: Format, *, readings: int, duration: int, rate: int, gil: bool, top: int, live: float = 0.0) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="pwbench-profile-"))
    suffix = ("live" if live else fmt) + ("-gil" if gil else "")
    try:
        with InfluxDB1Server(tmp / "influxdb") as influx, MosquittoServer(tmp / "mosquitto", persistence=False) as mq:
            ctx = Context(tmp, influx, Sizes(ingest_readings=readings))
            rules = tmp / "rules.toml"
            rules.write_text(rules_toml(), encoding="utf-8")
            config = service_config(tmp / "parkwatch.toml", data_dir=tmp / "data", mqtt_port=mq.port,
                                    store_url=influx.url_for("profile"), client_id="bench-profile", rules_file=rules)
            svc = ServiceProcess(config, tmp)
            try:
                svc.start(wait_for="subscribed to")
                if not live:
                    svc.terminate()
                    ingest.publish_backlog(mq.port, ingest.items_for(ctx, fmt))
                    svc.start(wait_for="session resumed")
                load = alert_latency.background_load(mq.port, live, 500) if live else contextlib.nullcontext()
                with load:
                    if live:
                        time.sleep(3.0)  # let the service settle into the load
                    raw = tmp / f"profile-{suffix}.raw"
                    cmd = [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "-o",
                           str(raw), "-f", "raw", "-r", str(rate), "--threads", "--subprocesses", "--pid",
                           str(svc.pid), "-d", str(duration)]  # --subprocesses: the ingest worker too
                    if gil:
                        cmd.append("--gil")
                    before, t0 = spool_counters(tmp / "data" / "spool.db"), time.monotonic()
                    cpu0 = thread_cpu(svc.pid)
                    subprocess.run(cmd, check=True, capture_output=True)
                    cpu1 = thread_cpu(svc.pid)
                    after, t1 = spool_counters(tmp / "data" / "spool.db"), time.monotonic()
                svc.terminate()
            finally:
                svc.kill()
        kept = (after.get("received", 0) - before.get("received", 0)) / (t1 - t0)
        stored = (after.get("stored", 0) - before.get("stored", 0)) / (t1 - t0)
        what = f"live JSON readings offered at {live:,.0f}/s on 500 stations" if live else \
            f"a {readings:,}-reading {fmt} backlog"
        title = (f"py-spy of the service ingesting {what}: {duration} s at {rate} Hz"
                 f"{', GIL holder only' if gil else ', on-CPU threads'}; while profiled it kept {kept:,.0f} and "
                 f"stored {stored:,.0f} readings/s")
        threads = aggregate(raw)
        add_cpu(threads, {t: cpu1[t] - cpu0.get(t, 0.0) for t in cpu1}, t1 - t0)
        text = report(threads, slots=duration * rate, top=top, title=title, gil=gil)
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw, RESULTS / raw.name)
        (RESULTS / f"profile-{suffix}.txt").write_text(text + "\n", encoding="utf-8")
        return text
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=("json", "hj212"), default="json")
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--gil", action="store_true", help="only samples of the thread holding the GIL")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--live", type=float, default=0.0, metavar="RATE",
                        help="instead of a backlog: live readings at RATE/s from bench.loadgen (part 2's load)")
    args = parser.parse_args(argv)
    print(profile(args.format, readings=args.readings, duration=args.duration, rate=args.rate, gil=args.gil,
                  top=args.top, live=args.live))
    return 0


if __name__ == "__main__":
    sys.exit(main())
