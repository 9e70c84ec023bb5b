"""The HJ 212 TCP gateway against a real mosquitto: many loggers at once, the CLI, and inside the service."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from config.compose import build
from config.settings import GatewaySection, settings_from_dict
from ingest import hj212
from ingest.hj212_gateway import GatewayPublisher, Hj212Gateway
from ingest.mqtt import MqttSettings
from tests.integration.harness import REPO, eventually
from tests.servers import MosquittoServer, free_port

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
LOGGERS = 200
FRAMES_PER_LOGGER = 20


class Subscriber:
    """A paho client that records every message on the given filters (QoS 1), in a session that survives
    reconnects and broker restarts (the broker queues for it while it is away)."""

    def __init__(self, port: int, *filters: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._filters = filters
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.reconnect_delay_set(1, 1)
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = 3600
        self._client.connect("127.0.0.1", port, clean_start=False, properties=session)
        self._client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK"

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not flags.session_present:
            client.subscribe([(f, 1) for f in self._filters])

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def on(self, suffix: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(t, p) for t, p in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def logger_frames(n: int, data_time: datetime) -> list[bytes]:
    """The frames of logger `n`: MN L{n}, one distinct QN and value per frame, all asking for an answer."""
    return [
        hj212.encode_readings(f"L{n:03d}", "2011", data_time - timedelta(seconds=i), {"pm25": n + i / 100},
                              tz=TZ, flag=5, qn=f"2026112708{n:03d}{i:04d}")
        for i in range(FRAMES_PER_LOGGER)
    ]


async def run_logger(port: int, frames: list[bytes], rng: random.Random) -> list[str | None]:
    """Send the frames cut at random byte boundaries with small random pauses; return the answers' QNs."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = b"".join(frames)
    cuts = sorted(rng.sample(range(1, len(stream)), 40))
    answers = asyncio.create_task(read_answers(reader, len(frames)))
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        writer.write(stream[start:end])
        await writer.drain()
        await asyncio.sleep(rng.uniform(0, 0.004))
    qns = await asyncio.wait_for(answers, 25)
    writer.close()
    return qns


async def read_answers(reader: asyncio.StreamReader, n: int) -> list[str | None]:
    return [hj212.decode_frame(await reader.readuntil(b"\r\n")).qn for _ in range(n)]


async def run_loggers(port: int, frames: list[list[bytes]]) -> list[list[str | None]]:
    rng = random.Random(212)
    seeds = [rng.random() for _ in frames]
    return await asyncio.gather(*(run_logger(port, f, random.Random(s)) for f, s in zip(frames, seeds, strict=True)))


@pytest.fixture
def gateway(mosquitto: MosquittoServer) -> Iterator[Hj212Gateway]:
    """A gateway on a free port publishing to the test's mosquitto; loggers L000-L099 mapped, the rest use MN."""
    stations = {f"L{n:03d}": f"station-{n}" for n in range(LOGGERS // 2)}
    section = GatewaySection(stations=stations, unknown_mn="use_mn", publish_timeout_s=10)
    section = section.model_copy(update={"listen": "127.0.0.1:0"})  # the validator refuses port 0
    publisher = GatewayPublisher(MqttSettings(port=mosquitto.port, client_id=f"gw-{uuid.uuid4().hex[:8]}"))
    publisher.start()
    assert publisher.wait_connected(10)
    gw = Hj212Gateway(section, publisher, park="demo")
    gw.start()
    yield gw
    gw.stop()
    publisher.stop()


def station_of(n: int) -> str:
    return f"station-{n}" if n < LOGGERS // 2 else f"L{n:03d}"


class TestManyLoggers:
    def test_every_frame_of_200_concurrent_loggers_arrives_once_and_is_answered(
        self, gateway: Hj212Gateway, mosquitto: MosquittoServer
    ) -> None:
        """200 loggers x 20 frames, cut at random: each frame once on its station's topic, each QN answered."""
        subscriber = Subscriber(mosquitto.port, "park/demo/air/+/hj212", "park/demo/deadletter")
        try:
            now = datetime.now(TZ).replace(microsecond=0)
            frames = [logger_frames(n, now) for n in range(LOGGERS)]
            started = time.monotonic()
            answers = asyncio.run(run_loggers(gateway.port, frames))
            expected = Counter((f"park/demo/air/{station_of(n)}/hj212", f) for n in range(LOGGERS) for f in frames[n])
            assert eventually(lambda: len(subscriber.on("/hj212")) >= len(expected), 20)
            time.sleep(0.3)  # a duplicate would arrive right behind
            assert Counter(subscriber.on("/hj212")) == expected
            assert subscriber.on("/deadletter") == []
            assert answers == [[hj212.decode_frame(f).qn for f in fs] for fs in frames]
            assert gateway.counters()["frames"] == gateway.counters()["answered"] == LOGGERS * FRAMES_PER_LOGGER
            assert gateway.connections == LOGGERS
            assert time.monotonic() - started < 30
        finally:
            subscriber.close()

    def test_garbage_is_dead_lettered_on_the_broker(self, gateway: Hj212Gateway, mosquitto: MosquittoServer) -> None:
        """Bytes outside a frame reach park/demo/deadletter as a contract §1 record naming the peer."""
        subscriber = Subscriber(mosquitto.port, "park/demo/deadletter")
        try:
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
                sock.sendall(b"hello\r\n")
                peer = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
                assert eventually(lambda: len(subscriber.messages) == 1, 10)
            record = json.loads(subscriber.messages[0][1])
            assert (record["topic"], record["payload"], record["code"]) == (peer, "hello", "missing_header")
            assert "received_at" in record
        finally:
            subscriber.close()


class TestBrokerOutage:
    def test_a_frame_sent_while_the_broker_is_down_is_answered_once_it_is_back(
        self, gateway: Hj212Gateway, mosquitto: MosquittoServer
    ) -> None:
        """No answer while the broker is away; after its restart the frame is delivered and then answered."""
        subscriber = Subscriber(mosquitto.port, "park/demo/air/+/hj212")
        raw = logger_frames(3, datetime.now(TZ).replace(microsecond=0))[0]
        try:
            mosquitto.stop()
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
                sock.sendall(raw)
                sock.settimeout(1.0)
                with pytest.raises(TimeoutError):
                    sock.recv(4096)
                mosquitto.start()
                sock.settimeout(15)
                answer = sock.recv(4096)
            assert hj212.decode_frame(answer).qn == hj212.decode_frame(raw).qn
            assert eventually(lambda: len(subscriber.messages) == 1, 10)
            time.sleep(0.5)
            assert subscriber.messages == [(f"park/demo/air/{station_of(3)}/hj212", raw)]
            assert (gateway.frames, gateway.answered, gateway.publish_failed) == (1, 1, 0)
        finally:
            subscriber.close()


def send_and_answer(port: int, frames: list[bytes]) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(frames))
        data = b""
        while data.count(b"\r\n") < len(frames):
            chunk = sock.recv(4096)
            assert chunk, "the gateway closed the connection"
            data += chunk
    return data.split(b"\r\n")[:-1]


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 15) -> None:
    def listening() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    assert eventually(listening, timeout, 0.1)


class TestCommandLine:
    def test_parkwatch_hj212_gateway_runs_until_sigterm(self, tmp_path: Path, mosquitto: MosquittoServer) -> None:
        """`parkwatch hj212-gateway --config F --listen H:P` relays frames to the broker, exits 0 on SIGTERM."""
        config = tmp_path / "gw.toml"
        config.write_text(f'[mqtt]\nurl = "{mosquitto.url}"\nclient_id = "cli-{uuid.uuid4().hex[:6]}"\n'
                          '[hj212.gateway]\nunknown_mn = "use_mn"\n')
        port = free_port()
        subscriber = Subscriber(mosquitto.port, "park/demo/air/+/hj212")
        proc = subprocess.Popen([sys.executable, "-m", "config.cli", "hj212-gateway", "--config", str(config),
                                 "--listen", f"127.0.0.1:{port}"], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        try:
            wait_listening(port, proc)
            frames = logger_frames(7, datetime.now(TZ).replace(microsecond=0))[:3]
            assert len(send_and_answer(port, frames)) == 3
            assert eventually(lambda: len(subscriber.messages) == 3, 10)
            assert {t for t, _ in subscriber.messages} == {"park/demo/air/L007/hj212"}
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
            counters = json.loads(out.strip().splitlines()[-1].split("; ", 1)[1])
            assert (counters["frames"], counters["answered"]) == (3, 3)
        finally:
            subscriber.close()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


class TestInsideTheService:
    def test_frames_through_the_gateway_are_stored(self, tmp_path: Path, mosquitto: MosquittoServer) -> None:
        """With hj212.gateway.enabled, `build` runs the gateway too: a frame over TCP becomes a stored reading."""
        port = free_port()
        db = tmp_path / "store.db"
        raw = {"data_dir": str(tmp_path / "data"),
               "mqtt": {"url": mosquitto.url, "client_id": f"pw-{uuid.uuid4().hex[:6]}"},
               "store": {"url": f"sqlite://{db}", "flush_interval_s": 0.1}, "http": {"listen": "127.0.0.1:0"},
               "hj212": {"gateway": {"enabled": True, "listen": f"127.0.0.1:{port}",
                                     "stations": {"L042": "ST42"}}}}
        service = build(settings_from_dict(raw, {}))
        service.start()
        try:
            assert service.source.wait_connected(10)
            time.sleep(0.3)
            hour = datetime.now(TZ).replace(minute=0, second=0, microsecond=0)
            frames = [hj212.encode_readings("L042", "2061", hour - timedelta(hours=i), {"pm25": 30.0 + i}, tz=TZ,
                                            flag=5, qn=f"20261127080000{i:03d}") for i in range(5)]
            assert len(send_and_answer(port, frames)) == 5

            def stored() -> int:
                try:
                    return int(sqlite3.connect(db).execute(
                        "SELECT count(*) FROM air_quality WHERE station = 'ST42'").fetchone()[0])
                except sqlite3.Error:
                    return 0

            assert eventually(lambda: stored() == 5, 15), (stored(), service.pipeline.counters())
        finally:
            service.stop()
