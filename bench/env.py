"""What every part of the benchmark shares: the servers, the service as a child process, its configuration
and rules, its counters, CPU accounting, and a check that the machine is quiet before a measurement.

Servers come from tests/servers.py (real mosquitto and InfluxDB 1.x on free loopback ports, in temporary
directories). The service runs as ``python -m config.cli run --config FILE``, so it has a process (and a
GIL) of its own, as in production, and py-spy can attach to it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from tests.integration.harness import toml_value
from tests.servers import HOST, InfluxDB1Server, MosquittoServer

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PARK = "demo"
# Nine values per reading, as the reference figures of servers.md (9 fields per point).
VALUE_NAMES = ("pm25", "pm10", "so2", "no2", "co", "o3", "temp", "rh", "wind_speed")

__all__ = ["HOST", "InfluxDB1Server", "MosquittoServer"]


def child_env() -> dict[str, str]:
    """Environment of a child Python process: the repository importable, no config from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKWATCH_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def eventually(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# --- a quiet machine ---------------------------------------------------------------------------------------


def wait_quiet(*, busy_pct: float = 15.0, max_wait_s: float = 120.0, log: Callable[[str], None] = print) -> float:
    """Wait until the machine is idle (all CPUs below `busy_pct` % over one second) and return the last
    reading. Called right before a measurement, when the servers the part started are idle, so what it
    sees is other work on the machine. Gives up after `max_wait_s` and returns the (busy) figure, which
    the results keep, so a measurement on a busy machine is visible as such."""
    end = time.monotonic() + max_wait_s
    warned = False
    while True:
        busy = psutil.cpu_percent(interval=1.0)
        if busy <= busy_pct or time.monotonic() >= end:
            if busy > busy_pct:
                log(f"  ! machine still busy ({busy:.0f} % of all CPUs used by other work); measuring anyway")
            return busy
        if not warned:
            log(f"  (machine busy: {busy:.0f} % of all CPUs in use by other work; waiting up to {max_wait_s:.0f} s)")
            warned = True


@dataclass
class CpuMeter:
    """CPU seconds that some processes used between `start` and `stop`, as % of one core."""

    pids: Mapping[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: _cpu_s(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        return {name: round(100 * (_cpu_s(pid) - self._start[name]) / wall, 1) for name, pid in self.pids.items()}


class OthersMeter:
    """CPU that processes outside this benchmark's process tree used between `start` and `stop`, in % of one
    core: other work on the machine during a measurement (the machine has 2 cores; 100 % is one of them).

    `steal_pct` (after `stop`), in the same unit: time the hypervisor ran something else while this machine's
    CPUs had work. These machines are virtual, and their speed changes over a session: the alerts part's
    p99 doubled for the same code in phases with 1.5 - 3.7 % steal, when every process also needed more CPU
    for the same load (2026-12-03), so the figure is kept beside each run."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self._start: dict[int, float] = {}
        self._steal0 = 0.0
        self.steal_pct = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = self._others()
        self._steal0 = _steal_s()

    def stop(self) -> float:
        wall = max(time.monotonic() - self._t0, 1e-9)
        now = self._others()
        self.steal_pct = round(100 * (_steal_s() - self._steal0) / wall, 1)
        used = sum(cpu - self._start.get(pid, 0.0) for pid, cpu in now.items())
        return round(100 * used / wall, 1)

    @staticmethod
    def _others() -> dict[int, float]:
        ours = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
        out: dict[int, float] = {}
        for proc in psutil.process_iter(["pid", "cpu_times"]):
            times = proc.info.get("cpu_times")
            if proc.info["pid"] not in ours and times is not None:
                out[proc.info["pid"]] = times.user + times.system
        return out


def _steal_s() -> float:
    """Seconds of steal over all CPUs since boot (0 where the kernel does not count it)."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def _cpu_s(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def server_pid(server: MosquittoServer | InfluxDB1Server) -> int:
    """The process id of a server this process started through tests/servers.py (found by its config)."""
    for child in psutil.Process().children():
        try:
            if str(server.config_path) in child.cmdline():
                return child.pid
        except psutil.Error:
            continue
    raise RuntimeError(f"{server.binary} on port {server.port} is not running")


# --- configuration ------------------------------------------------------------------------------------------


def rules_toml(*, with_tracker: bool = True) -> str:
    """A few threshold rules, plus the air-quality tracker (an `average` rule) when the rules file accepts
    one. Returns the TOML text; `tracker_available()` says whether the tracker is in it."""
    text = """\
lateness_s = 3600

[[rule]]
type = "threshold"
name = "pm25_high"
value = "pm25"
levels = [{ severity = "major", above = 75.0, clear = 65.0 }, { severity = "critical", above = 150.0, clear = 130.0 }]

[[rule]]
type = "threshold"
name = "so2_high"
value = "so2"
count = 2
levels = [{ severity = "major", above = 500.0, clear = 400.0 }]

[[rule]]
type = "threshold"
name = "no2_high"
value = "no2"
for_s = 300
levels = [{ severity = "warning", above = 200.0, clear = 180.0 }]

[[rule]]
type = "threshold"
name = "o3_high"
value = "o3"
levels = [{ severity = "warning", above = 200.0, clear = 160.0 }]
"""
    if with_tracker and tracker_available():
        text += """
[[rule]]
type = "average"
name = "pm25_24h"
pollutant = "pm25"
averaging = "24h"
"""
    return text


def tracker_available() -> bool:
    """Whether rules files accept the rules that run the air-quality tracker (`average`, `aqi`)."""
    from rules.config import RULE_TYPES  # noqa: PLC0415 - read at run time: others are wiring it in

    return "average" in RULE_TYPES


def service_config(
    path: Path, *, data_dir: Path, mqtt_port: int, store_url: str, client_id: str, rules_file: Path | None,
    alerts: Mapping[str, Any] | None = None, log_level: str = "INFO",
) -> Path:
    """Write the service configuration the benchmark uses: store defaults (batches of 5,000, flushed after
    1 s), `synchronous = "full"`, the broker's Receive Maximum at its default (10,000)."""
    sections: dict[str, Mapping[str, Any]] = {
        "park": {"id": PARK},
        "mqtt": {"url": f"mqtt://{HOST}:{mqtt_port}", "client_id": client_id},
        "store": {"url": store_url},
        "spool": {"synchronous": "full"},
        "log": {"level": log_level},
        "http": {"listen": f"{HOST}:0"},  # the benchmark may run beside another service
    }
    if rules_file is not None:
        sections["rules"] = {"file": str(rules_file)}
    if alerts is not None:
        sections["alerts"] = alerts
    lines = [f"data_dir = {toml_value(str(data_dir))}"]
    for name, body in sections.items():
        lines.append(f"[{name}]")
        for key, value in body.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                continue  # arrays of tables below
            lines.append(f"{key} = {toml_value(value)}")
        for key, value in body.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                for table in value:
                    lines.append(f"[[{name}.{key}]]")
                    lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def spool_counters(spool: Path) -> dict[str, int]:
    """received/stored/deadlettered/duplicates as the service's spool holds them (read-only look)."""
    if not spool.exists():
        return {}
    conn = sqlite3.connect(spool, timeout=5)
    try:
        return dict(conn.execute("SELECT name, value FROM counters").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


# --- the service as a child process -------------------------------------------------------------------------


class ServiceProcess:
    """`python -m config.cli run --config FILE`, optionally under a wrapper (py-spy record -- ...)."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"service-{self.starts}.log"

    @property
    def out_path(self) -> Path:
        return self.workdir / f"service-{self.starts}.out"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def processes(self) -> dict[str, int]:
        """The service's processes by role: "service", "worker" when it runs an ingest worker, "drainer" when
        its drainer runs in a process of its own (ingest/child.py puts the role on each child's command line)."""
        out = {"service": self.pid}
        try:
            for child in psutil.Process(self.pid).children():
                cmdline = child.cmdline()
                if "ingest.child" in " ".join(cmdline):
                    role = cmdline[-1]
                    out[{"ingest-worker": "worker"}.get(role, role)] = child.pid
        except psutil.Error:
            pass
        return out

    def start(self, *, wait_for: str = "subscribed to|session resumed", timeout: float = 60.0) -> float:
        """Start and wait until the log shows one of `wait_for` ('|'-separated); return that line's time."""
        self.starts += 1
        cmd = [PYTHON, "-m", "config.cli", "run", "--config", str(self.config)]
        with self.log_path.open("wb") as err, self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, env=child_env())
        needles = wait_for.split("|")
        found: list[float] = []

        def seen() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                return True
            at = self.log_time(needles)
            if at is not None:
                found.append(at)
            return bool(found)

        eventually(seen, timeout, 0.02)
        if not found:
            self.kill()
            raise RuntimeError(f"service did not reach {wait_for!r}:\n{self.log()[-3000:]}")
        return found[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_time(self, needles: Iterable[str]) -> float | None:
        """The time (epoch s) of the first log line that contains one of `needles`, from its asctime."""
        for line in self.log().splitlines():
            if any(n in line for n in needles):
                return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return None

    def terminate(self, timeout: float = 120.0) -> dict[str, int]:
        """SIGTERM, wait for exit 0, return the final counters the service printed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        if code != 0:
            raise RuntimeError(f"service exited with {code}:\n{self.log()[-3000:]}")
        text = self.out_path.read_text(errors="replace")
        last = [line for line in text.splitlines() if line.startswith("parkwatch: stopped; ")]
        return json.loads(last[-1].split("; ", 1)[1]) if last else {}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
