"""Nothing the broker hands over is lost: not on a database outage, a crash, or a broker restart.

Each test streams 20,000 readings through a real mosquitto into a real InfluxDB 1.6 via the service as
a real process, injects one fault mid-stream, and then checks that every reading is in the store exactly
once and that the service's accounting closes: received = stored + dead-lettered + duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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


class TestNothingLost:
    def test_influxdb_outage_of_30s_mid_stream(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """InfluxDB down for 30 s mid-stream: readings wait in the spool and all arrive once it is back."""
        service.start()
        publisher = StreamPublisher("127.0.0.1", mosquitto.port, rate=1000)
        publisher.stream(N)
        publisher.wait_sent(N // 4)
        influxdb1.stop()
        outage_started = time.monotonic()
        publisher.wait_sent(N // 2)
        time.sleep(max(0.0, 30 - (time.monotonic() - outage_started)))
        assert "store write failed" in service.log()
        influxdb1.start()
        publisher.finish()
        assert eventually(lambda: stored(influxdb1) == N, 120), f"stored {stored(influxdb1)} of {N}"
        publisher.close()
        assert_every_reading_once(influxdb1, service.terminate())

    def test_service_killed_with_sigkill_mid_stream(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """SIGKILL mid-stream: on restart the broker redelivers what was not acknowledged; nothing is lost."""
        service.start()
        publisher = StreamPublisher("127.0.0.1", mosquitto.port, rate=4000)
        publisher.stream(N)
        publisher.wait_sent(N // 3)
        service.kill()
        publisher.wait_sent(N * 2 // 3)
        service.start()
        publisher.finish()
        assert eventually(lambda: stored(influxdb1) == N, 120), f"stored {stored(influxdb1)} of {N}"
        publisher.close()
        assert_every_reading_once(influxdb1, service.terminate())

    def test_broker_restart_mid_stream(
        self, service: ServiceProcess, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """The broker (with persistence) restarts mid-stream: the service reconnects and nothing is lost."""
        service.start()
        publisher = StreamPublisher("127.0.0.1", mosquitto.port, rate=4000)
        publisher.stream(N)
        publisher.wait_sent(N // 3)
        mosquitto.stop()
        time.sleep(2)
        mosquitto.start()
        publisher.finish()
        assert eventually(lambda: stored(influxdb1) == N, 120), f"stored {stored(influxdb1)} of {N}"
        assert "lost the broker" in service.log()
        publisher.close()
        assert_every_reading_once(influxdb1, service.terminate())
