"""Scale-out by a static split: two instances share one park's stations through one real mosquitto.

Each instance lists its own stations (`mqtt.subscribe = "listed"`) and has its own client id, data
directory and SQLite store. A store each, rather than one shared InfluxDB, makes "nothing doubled"
observable: a point written twice to one InfluxDB overwrites itself, so a reading that both instances kept
would not show there, while two stores show which instance kept what.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests.integration.harness import ServiceProcess, StreamPublisher, eventually, write_config
from tests.servers import MosquittoServer

pytestmark = [pytest.mark.integration]

N = 10_000
STATIONS = [f"ST{i:02d}" for i in range(10)]


@dataclass
class Instance:
    """One ParkWatch instance of the split: its configuration, process and store."""

    name: str
    workdir: Path
    mqtt_url: str
    client_id: str
    process: ServiceProcess | None = None

    @property
    def store(self) -> Path:
        return self.workdir / "store.db"

    @property
    def held_file(self) -> Path:
        return self.workdir / "data" / "subscriptions.json"

    def configure(self, stations: list[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = write_config(self.workdir / "parkwatch.toml", mqtt_url=self.mqtt_url,
                              store_url=f"sqlite://{self.store}", data_dir=self.workdir / "data",
                              park={"stations": stations},
                              mqtt={"client_id": self.client_id, "subscribe": "listed"},
                              http={"listen": "127.0.0.1:0"})  # two instances on one host: a port each
        if self.process is None:
            self.process = ServiceProcess(config, self.workdir)

    def readings(self) -> list[tuple[str, float]]:
        """(station, pm25) of every reading in this instance's store."""
        try:
            with closing(sqlite3.connect(self.store)) as db:
                return db.execute("SELECT station, pm25 FROM air_quality").fetchall()
        except sqlite3.Error:
            return []


@pytest.fixture
def instances(tmp_path: Path, mosquitto: MosquittoServer) -> Iterator[tuple[Instance, Instance]]:
    run = uuid.uuid4().hex[:8]
    pair = (Instance("a", tmp_path / "a", mosquitto.url, f"pw-a-{run}"),
            Instance("b", tmp_path / "b", mosquitto.url, f"pw-b-{run}"))
    yield pair
    for instance in pair:
        if instance.process is not None:
            instance.process.stop_quietly()


def start(instance: Instance, stations: list[str]) -> ServiceProcess:
    instance.configure(stations)
    assert instance.process is not None
    instance.process.start()
    return instance.process


def stream(mosquitto: MosquittoServer, n: int, *, hours_back: int = 0) -> None:
    """Publish readings 0..n-1 over ST00..ST09 (reading i to ST{i % 10}, pm25 = i) and wait for the PUBACKs."""
    publisher = StreamPublisher("127.0.0.1", mosquitto.port, rate=3000)
    publisher.base -= timedelta(hours=hours_back)
    publisher.stream(n)
    publisher.finish()
    publisher.close()


def stored_by_both(a: Instance, b: Instance, n: int) -> bool:
    return len(a.readings()) + len(b.readings()) >= n


def assert_accounting_closes(counters: dict[str, int], stored: int) -> None:
    assert counters["in_spool"] == 0
    assert counters["received"] == counters["stored"] + counters["deadlettered"] + counters["duplicates"]
    assert counters["stored"] == stored and counters["deadlettered"] == 0


class TestStaticSplit:
    def test_two_instances_store_every_reading_exactly_once(
        self, instances: tuple[Instance, Instance], mosquitto: MosquittoServer
    ) -> None:
        """Stations split 5/5: every reading is stored once, by the instance that owns its station."""
        a, b = instances
        start(a, STATIONS[:5])
        start(b, STATIONS[5:])
        stream(mosquitto, N)
        assert eventually(lambda: stored_by_both(a, b, N), 60), f"stored {len(a.readings())} + {len(b.readings())}"
        assert a.process is not None and b.process is not None
        counters_a, counters_b = a.process.terminate(), b.process.terminate()

        in_a, in_b = a.readings(), b.readings()
        assert {s for s, _ in in_a} == set(STATIONS[:5]) and {s for s, _ in in_b} == set(STATIONS[5:])
        assert sorted(v for _, v in in_a + in_b) == [float(i) for i in range(N)], "a reading lost or doubled"
        assert len(in_a) == len(in_b) == N // 2
        assert_accounting_closes(counters_a, N // 2)
        assert_accounting_closes(counters_b, N // 2)

    def test_a_station_moved_between_instances_follows_the_configuration(
        self, instances: tuple[Instance, Instance], mosquitto: MosquittoServer
    ) -> None:
        """ST04 moved from a to b: on restart (sessions resumed) a unsubscribes it and b subscribes it."""
        a, b = instances
        first = 2_000
        start(a, STATIONS[:5])
        start(b, STATIONS[5:])
        stream(mosquitto, first, hours_back=2)
        assert eventually(lambda: stored_by_both(a, b, first), 60)
        assert a.process is not None and b.process is not None
        a.process.terminate()
        b.process.terminate()

        start(a, STATIONS[:4])
        start(b, STATIONS[4:])
        assert "session resumed" in a.process.log() and "session resumed" in b.process.log()
        assert eventually(lambda: "ST04" not in a.held_file.read_text(), 10), "a kept its ST04 subscriptions"
        stream(mosquitto, N)
        assert eventually(lambda: stored_by_both(a, b, first + N), 60)
        counters_a, counters_b = a.process.terminate(), b.process.terminate()

        in_a, in_b = a.readings(), b.readings()
        st04_in_a = sorted(v for s, v in in_a if s == "ST04")
        st04_in_b = sorted(v for s, v in in_b if s == "ST04")
        assert st04_in_a == [float(i) for i in range(4, first, 10)], "a stored ST04 after the move"
        assert st04_in_b == [float(i) for i in range(4, N, 10)], "b missed ST04 after the move"
        assert len(in_a) + len(in_b) == first + N
        assert json.loads(b.held_file.read_text())["filters"][0] == "park/demo/air/ST04/reading"
        assert_accounting_closes(counters_a, first // 2 + N * 4 // 10)
        assert_accounting_closes(counters_b, first // 2 + N * 6 // 10)
