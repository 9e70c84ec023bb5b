"""Nothing the broker hands over is lost: not on a database outage, a crash, or a broker restart.

Each test streams 20,000 readings through a real mosquitto into a real InfluxDB 1.6 via the service as
a real process, injects one fault mid-stream, and then checks that every reading is in the store exactly
once and that the service's accounting closes: received = stored + dead-lettered + duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ServiceProcess, StreamPublisher, eventually, write_config
from tests.servers import InfluxDB1Server, MosquittoServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 20_000
DB = "parkwatch"


@pytest.fixture
def service(tmp_path: Path, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server) -> Iterator[ServiceProcess]:
    config = write_config(tmp_path / "parkwatch.toml", mqtt_url=mosquitto.url, store_url=influxdb1.url_for(DB),
                          data_dir=tmp_path / "data")
    proc = ServiceProcess(config, tmp_path)
    yield proc
    proc.stop_quietly()


def stored(influxdb1: InfluxDB1Server) -> int:
    try:
        rows = influxdb1.query(DB, "SELECT count(pm25) FROM air_quality")
    except (RuntimeError, OSError):
        return -1
    return int(rows[0]["count"]) if rows else 0


def assert_every_reading_once(influxdb1: InfluxDB1Server, counters: dict[str, int]) -> None:
    rows = influxdb1.query(DB, "SELECT count(pm25), sum(pm25), count(so2) FROM air_quality")
    assert rows[0]["count"] == N, "a reading is missing or stored twice"
    assert rows[0]["sum"] == sum(range(N)), "a reading was stored with the wrong value"
    assert counters["in_spool"] == 0
    assert counters["received"] == counters["stored"] + counters["deadlettered"] + counters["duplicates"]
    assert counters["stored"] == N and counters["deadlettered"] == 0


def stream_with_fault(
    service: ServiceProcess, broker: MosquittoServer, influxdb1: InfluxDB1Server, *, rate: float,
    fault: Callable[[StreamPublisher], None],
) -> None:
    """Start the service, stream N readings, inject `fault` mid-stream, and check every reading arrived once."""
    service.start()
    publisher = StreamPublisher("127.0.0.1", broker.port, rate=rate)
    publisher.stream(N)
    fault(publisher)
    publisher.finish()
    assert eventually(lambda: stored(influxdb1) == N, 120), f"stored {stored(influxdb1)} of {N}"
    publisher.close()
    assert_every_reading_once(influxdb1, service.terminate())


def kill_and_see_it_replaced(service: ServiceProcess, role: str, what: str) -> None:
    """SIGKILL the service's child of `role` (ingest/child.py) and wait until the service has started another."""
    child = service.child(role)
    assert child is not None
    child.kill()
    assert eventually(lambda: f"{what} died" in service.log(), 10)
    assert eventually(lambda: f"{what} started" in service.log().split(f"{what} died")[1], 20)
    replacement = service.child(role)
    assert replacement is not None and replacement.pid != child.pid


class TestNothingLost:
    def test_influxdb_outage_of_30s_mid_stream(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """InfluxDB down for 30 s mid-stream: readings wait in the spool and all arrive once it is back."""

        def outage(publisher: StreamPublisher) -> None:
            publisher.wait_sent(N // 4)
            influxdb1.stop()
            started = time.monotonic()
            publisher.wait_sent(N // 2)
            time.sleep(max(0.0, 30 - (time.monotonic() - started)))
            assert "store write failed" in service.log()
            influxdb1.start()

        stream_with_fault(service, mosquitto, influxdb1, rate=1000, fault=outage)

    def test_service_killed_with_sigkill_mid_stream(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """SIGKILL mid-stream: on restart the broker redelivers what was not acknowledged; nothing is lost."""

        def crash(publisher: StreamPublisher) -> None:
            publisher.wait_sent(N // 3)
            service.kill()
            publisher.wait_sent(N * 2 // 3)
            service.start()

        stream_with_fault(service, mosquitto, influxdb1, rate=4000, fault=crash)

    def test_ingest_worker_killed_with_sigkill_mid_stream(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """The ingest worker alone is SIGKILLed mid-stream: the service starts another, the broker
        redelivers what the dead one had not acknowledged; nothing is lost, the service never stops."""

        def crash(publisher: StreamPublisher) -> None:
            publisher.wait_sent(N // 3)
            kill_and_see_it_replaced(service, "ingest-worker", "the ingest worker")

        stream_with_fault(service, mosquitto, influxdb1, rate=4000, fault=crash)

    def test_drainer_killed_with_sigkill_mid_stream(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """The drainer alone is SIGKILLed mid-stream: the service starts another, which writes what the dead
        one had not released; intake never stops, nothing is lost or stored twice."""

        def crash(publisher: StreamPublisher) -> None:
            publisher.wait_sent(N // 3)
            kill_and_see_it_replaced(service, "drainer", "the drainer")

        stream_with_fault(service, mosquitto, influxdb1, rate=4000, fault=crash)

    def test_service_killed_alone_mid_stream_its_worker_leaves(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """The service's process alone is SIGKILLed: its ingest worker sees it gone, keeps and acknowledges
        what it took, and exits (no orphan holds the session); its drainer leaves too; the restarted service
        gets the rest."""

        def crash(publisher: StreamPublisher) -> None:
            publisher.wait_sent(N // 3)
            drainer = service.drainer()
            assert drainer is not None
            worker = service.kill_service_only()
            worker.wait(15)  # raises psutil.TimeoutExpired if the orphan stays
            drainer.wait(15)
            publisher.wait_sent(N * 2 // 3)
            service.start()

        stream_with_fault(service, mosquitto, influxdb1, rate=4000, fault=crash)

    def test_broker_restart_mid_stream(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """The broker (with persistence) restarts mid-stream: the service reconnects and nothing is lost."""

        def restart(publisher: StreamPublisher) -> None:
            publisher.wait_sent(N // 3)
            mosquitto.stop()
            time.sleep(2)
            mosquitto.start()

        stream_with_fault(service, mosquitto, influxdb1, rate=4000, fault=restart)
        assert "lost the broker" in service.log()
