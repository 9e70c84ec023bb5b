"""The service as a real process, and a publisher of a stream of readings: for the fault tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

REPO = Path(__file__).resolve().parents[2]


def eventually(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def toml_value(value: Any) -> str:
    """A TOML inline value (tables inline, lists, strings in JSON-compatible basic-string form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def write_config(path: Path, *, mqtt_url: str, store_url: str, data_dir: Path, **sections: dict[str, Any]) -> Path:
    """A service configuration for a test: unique client id, fast flushes, data in `data_dir`."""
    park = sections.pop("park", {})
    lines = [f'data_dir = "{data_dir}"', "[park]", f'id = "{park.get("id", "demo")}"']
    lines += [f"{k} = {toml_value(v)}" for k, v in park.items() if k != "id"]
    mqtt = {"url": mqtt_url, "client_id": f"pw-test-{uuid.uuid4().hex[:8]}", **sections.pop("mqtt", {})}
    store = {"url": store_url, "flush_interval_s": 0.2, "retry_initial_s": 0.2, "retry_cap_s": 2.0,
             **sections.pop("store", {})}
    http = {"listen": "127.0.0.1:0", **sections.pop("http", {})}  # two services may run at once
    for name, body in {"mqtt": mqtt, "store": store, "http": http, **sections}.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ServiceProcess:
    """`parkwatch run --config FILE` as a child process, with its output in files."""

    config: Path
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"service-{self.starts}.log"

    @property
    def out_path(self) -> Path:
        return self.workdir / f"service-{self.starts}.out"

    def start(self, *, wait_subscribed: bool = True) -> None:
        self.starts += 1
        cmd = [sys.executable, "-m", "config.cli", "run", "--config", str(self.config)]
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        with self.log_path.open("wb") as err, self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=self.workdir, env=env)
        if wait_subscribed:
            ok = eventually(lambda: "subscribed to" in self.log() or "session resumed" in self.log()
                            or self.proc is None or self.proc.poll() is not None, 20)
            assert ok and self.proc.poll() is None, f"service did not subscribe:\n{self.log()[-3000:]}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the service and its children (ingest worker, drainer) together: no flush, no goodbye."""
        assert self.proc is not None
        children = self.children()
        self.proc.send_signal(signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.proc.wait(10)

    def kill_service_only(self) -> psutil.Process:
        """SIGKILL to the service's process alone; returns its ingest worker, left to notice."""
        assert self.proc is not None
        worker = self.worker()
        assert worker is not None, "no ingest worker"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return worker

    def worker(self) -> psutil.Process | None:
        """The service's ingest worker process (ingest/worker.py), if it has one."""
        return self.child("ingest-worker")

    def drainer(self) -> psutil.Process | None:
        """The service's drainer process (ingest/drain_process.py), if it has one."""
        return self.child("drainer")

    def child(self, role: str) -> psutil.Process | None:
        """The service's child process of `role` (the last word of its command line, ingest/child.py)."""
        found = [c for c in self.children() if _cmdline(c)[-1:] == [role]]
        return found[0] if found else None

    def children(self) -> list[psutil.Process]:
        """The service's child processes (ingest/child.py's; none once the service is gone)."""
        assert self.proc is not None
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [c for c in children if "ingest.child" in " ".join(_cmdline(c))]

    def terminate(self, timeout: float = 60) -> dict[str, int]:
        """SIGTERM, wait for a clean exit 0, return the final counters it printed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        assert code == 0, f"exit {code}:\n{self.log()[-3000:]}"
        last = [line for line in self.output().splitlines() if line.startswith("parkwatch: stopped; ")]
        assert last, self.output()
        counters: dict[str, int] = json.loads(last[-1].split("; ", 1)[1])
        return counters

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def reading_payload(i: int, base: datetime) -> bytes:
    ts = base + timedelta(seconds=i // 10)
    return json.dumps({"ts": ts.isoformat(), "seq": i, "values": {"pm25": float(i), "so2": 8.0}}).encode()


def reading_topic(park: str, i: int) -> str:
    return f"park/{park}/air/ST{i % 10:02d}/reading"


class StreamPublisher:
    """Publishes readings 0..n-1 at QoS 1 at a steady rate, surviving broker restarts (paho resends)."""

    def __init__(self, host: str, port: int, *, park: str = "demo", rate: float = 2000.0) -> None:
        self.base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self.park = park
        self.rate = rate
        self.sent = 0
        self.published = 0
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.max_inflight_messages_set(200)
        self.acknowledged = 0
        self._client.on_publish = self._on_publish
        self._client.reconnect_delay_set(0.1, 1.0)
        self._client.connect(host, port)
        self._client.loop_start()
        self._thread: threading.Thread | None = None

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acknowledged += 1

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1; like a device, wait while the broker is away (paho resends what is in flight)."""
        assert eventually(self._client.is_connected, 120, 0.05), "publisher never reconnected"
        info = self._client.publish(topic, payload, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish failed: {info.rc}")
        self.published += 1

    def stream(self, n: int) -> None:
        """Publish n readings in a background thread at `rate` per second."""
        def run() -> None:
            start = time.monotonic()
            for i in range(n):
                self.publish(reading_topic(self.park, i), reading_payload(i, self.base))
                self.sent = i + 1
                ahead = start + (i + 1) / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        self._thread = threading.Thread(target=run, name="stream-publisher", daemon=True)
        self._thread.start()

    def wait_sent(self, count: int, timeout: float = 120) -> None:
        assert eventually(lambda: self.sent >= count, timeout, 0.02), f"only {self.sent} sent"

    def finish(self, timeout: float = 180) -> None:
        """Wait until every message published has been acknowledged by the broker."""
        if self._thread is not None:
            self._thread.join(timeout)
        ok = eventually(lambda: self.acknowledged >= self.published, timeout, 0.2)
        assert ok, f"{self.published - self.acknowledged} publishes never acknowledged"

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
