"""Security against real servers: mosquitto with TLS, client certificates and a password file; HTTPS stores.

Every test makes its own PKI (a CA, a server certificate for 127.0.0.1, a client certificate) with the
`openssl` command line and its own mosquitto password file with `mosquitto_passwd`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from config.compose import Service, build
from config.settings import settings_from_dict
from ingest.errors import StoreError
from ingest.mqtt import MqttSettings, MqttSource, configure_security
from ingest.points import Point
from ingest.stores import store_from_url
from tests.conftest import require_binary
from tests.integration.harness import eventually
from tests.pki import Pki, make_pki, mosquitto_password_file, tools_missing
from tests.servers import InfluxDB1Server, MosquittoServer, TlsFiles, VictoriaMetricsServer, free_port

pytestmark = pytest.mark.integration

USER = "parkwatch"


def secret(kind: str) -> str:
    """A secret unique to the test, so finding it in a log cannot be a coincidence."""
    return f"{kind}-{uuid.uuid4().hex}"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    for tool in tools_missing():
        require_binary(tool)
    return make_pki(tmp_path / "pki")


def tls_broker(tmp_path: Path, pki: Pki, password: str) -> MosquittoServer:
    """A mosquitto (not started) with only a TLS listener that wants a client certificate AND a password."""
    require_binary(MosquittoServer.binary)
    passwords = mosquitto_password_file(tmp_path / "mosquitto.passwd", {USER: password})
    listener = "\n".join([f"cafile {pki.ca}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}",
                          "require_certificate true", "use_identity_as_username false"])
    return MosquittoServer(tmp_path / "mosquitto", listener_conf=listener, anonymous=False,
                           extra_conf=f"password_file {passwords}")


@pytest.fixture
def broker_password() -> str:
    return secret("broker")


@pytest.fixture
def broker(tmp_path: Path, pki: Pki, broker_password: str) -> Iterator[MosquittoServer]:
    with tls_broker(tmp_path, pki, broker_password) as server:
        yield server


def client_settings(broker: MosquittoServer, pki: Pki, **overrides: Any) -> MqttSettings:
    """What a client needs for the TLS broker: CA, client certificate and key, user name and password."""
    base: dict[str, Any] = dict(host="127.0.0.1", port=broker.port, client_id=f"t-{uuid.uuid4().hex[:8]}", tls=True,
                                ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key),
                                username=USER)
    return MqttSettings(**{**base, **overrides})


def service_config(tmp_path: Path, broker: MosquittoServer, pki: Pki, *, password_file: Path | None = None,
                   mqtt: dict[str, Any] | None = None, store: dict[str, Any] | None = None) -> dict[str, Any]:
    secret_file = {"password_file": str(password_file)} if password_file is not None else {}
    return {
        "data_dir": str(tmp_path / "data"),
        "mqtt": {"url": f"mqtts://127.0.0.1:{broker.port}", "client_id": f"pw-{uuid.uuid4().hex[:6]}",
                 "username": USER, "ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
                 "key_file": str(pki.client_key), **secret_file, **(mqtt or {})},
        "store": {"url": f"sqlite://{tmp_path / 'store.db'}", "flush_interval_s": 0.1, "retry_initial_s": 0.1,
                  "retry_cap_s": 0.5, **(store or {})},
        "spool": {"shutdown_drain_s": 0.5},
        "http": {"listen": "127.0.0.1:0"},
    }


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def publish_reading(settings: MqttSettings, station: str = "ST01") -> None:
    """One reading, published at QoS 1 through a client configured like ours, and acknowledged."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                         protocol=MQTTProtocolVersion.MQTTv5)
    configure_security(client, settings)
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        body = {"ts": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(), "values": {"pm25": 35.0}}
        info = client.publish(f"park/demo/air/{station}/reading", json.dumps(body), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def stored_readings(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM air_quality").fetchone()[0])
    except sqlite3.Error:
        return 0


def started(raw: dict[str, Any]) -> Service:
    service = build(settings_from_dict(raw, {}))
    service.start()
    return service


class TestTlsBroker:
    def test_the_service_connects_with_tls_a_client_certificate_and_a_password_file(
        self, tmp_path: Path, pki: Pki, broker: MosquittoServer, broker_password: str
    ) -> None:
        """mqtts:// with CA, client certificate and key, user and password file: readings stored, alerts linked."""
        password_file = write_secret(tmp_path / "mqtt.password", broker_password)
        service = started(service_config(tmp_path, broker, pki, password_file=password_file))
        try:
            assert service.source.wait_connected(10), broker.log_tail()
            assert service.alerts.link is not None and service.alerts.link.wait_connected(10)
            time.sleep(0.3)  # the subscription
            publish_reading(client_settings(broker, pki, password=broker_password))
            assert eventually(lambda: stored_readings(tmp_path / "store.db") == 1, 10)
        finally:
            service.stop()
        assert service.pipeline.counters()["stored"] == 1

    def test_a_wrong_password_is_refused_and_the_service_keeps_trying(
        self, tmp_path: Path, pki: Pki, broker: MosquittoServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A wrong password: refused, logged without the password, retried with backoff; nothing crashes."""
        caplog.set_level(logging.DEBUG)
        wrong = secret("wrong")
        service = started(service_config(tmp_path, broker, pki, password_file=write_secret(tmp_path / "pw", wrong)))
        try:
            assert eventually(lambda: service.source.reconnects >= 2, 10)
            assert not service.source.connected
            assert service.alerts.link is not None and not service.alerts.link.wait_connected(0.1)
            assert service.pipeline.counters()["received"] == 0
        finally:
            service.stop()
        assert "broker refused the connection: Not authorized" in caplog.text
        assert "alerts link refused by the broker" in caplog.text
        assert wrong not in caplog.text

    def test_a_client_without_a_certificate_is_refused(
        self, pki: Pki, broker: MosquittoServer, broker_password: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The right password but no client certificate: the TLS handshake is refused, the client retries."""
        source = MqttSource(client_settings(broker, pki, password=broker_password, cert_file=None, key_file=None),
                            ["park/demo/#"])
        source.start()
        try:
            assert eventually(lambda: source.reconnects >= 2, 10)
            assert not source.connected
        finally:
            source.stop()
        assert "closed the connection before accepting it" in caplog.text
        assert "certificate" in broker.log_tail(50)

    def test_plain_mqtt_to_the_tls_port_fails_cleanly(
        self, pki: Pki, broker: MosquittoServer, broker_password: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """mqtt:// to a TLS port: no connection, no exception, retried, and stop() ends it promptly."""
        source = MqttSource(client_settings(broker, pki, password=broker_password, tls=False), ["park/demo/#"])
        source.start()
        try:
            assert eventually(lambda: source.reconnects >= 2, 10)
            assert not source.connected
        finally:
            began = time.monotonic()
            source.stop()
        assert time.monotonic() - began < 5
        assert "closed the connection before accepting it" in caplog.text

    def test_a_broker_certificate_from_another_ca_is_refused(
        self, pki: Pki, broker: MosquittoServer, broker_password: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The broker's certificate is checked: trusting another CA, the client does not connect."""
        source = MqttSource(client_settings(broker, pki, password=broker_password, ca_file=str(pki.other_ca)),
                            ["park/demo/#"])
        source.start()
        try:
            assert eventually(lambda: "CERTIFICATE_VERIFY_FAILED" in caplog.text, 10)
            assert not source.connected
        finally:
            source.stop()


class TestSecretsNeverLogged:
    @pytest.mark.parametrize("variant", ["password_file+token", "url_password+influxdb1_password"])
    def test_no_secret_in_any_log_line_through_connect_and_store_failures(
        self, tmp_path: Path, pki: Pki, variant: str, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """With a password and a token configured: the broker down, then up, then the store failing; at
        DEBUG no log line, traceback or printed text holds either secret."""
        caplog.set_level(logging.DEBUG)
        password, token = secret("broker"), secret("token")
        broker = tls_broker(tmp_path, pki, password)  # not started yet: the first connects fail
        dead = free_port()  # no store listens here: every write fails
        if variant == "password_file+token":
            raw = service_config(tmp_path, broker, pki, password_file=write_secret(tmp_path / "pw", password),
                                 store={"url": f"influxdb://127.0.0.1:{dead}?org=o&bucket=b",
                                        "token_file": str(write_secret(tmp_path / "token", token))})
        else:
            raw = service_config(tmp_path, broker, pki,
                                 mqtt={"url": f"mqtts://{USER}:{password}@127.0.0.1:{broker.port}"},
                                 store={"url": f"influxdb1://writer:{token}@127.0.0.1:{dead}/parkwatch"})
        service = started(raw)
        try:
            assert eventually(lambda: "unreachable" in caplog.text, 10)
            broker.start()
            assert service.source.wait_connected(15), broker.log_tail()
            time.sleep(0.3)
            publish_reading(client_settings(broker, pki, password=password))
            assert eventually(lambda: "store write failed" in caplog.text, 10)
        finally:
            service.stop()
            broker.stop()
        printed = capsys.readouterr()
        texts = [caplog.text, printed.out, printed.err, *(r.getMessage() for r in caplog.records),
                 service.store_url, service.mqtt_url]
        for text in texts:
            assert password not in text and token not in text
        assert "unreachable" in caplog.text and "store write failed" in caplog.text


class TestHttpsStores:
    def test_influxdb1s_writes_to_an_https_influxd_trusting_the_ca_file(self, tmp_path: Path, pki: Pki) -> None:
        """influxdb1:// over HTTPS (influxd with https-enabled) with store.ca_file: the point is stored."""
        require_binary(InfluxDB1Server.binary)
        tls = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
        with InfluxDB1Server(tmp_path / "influxdb1", tls=tls) as server:
            store = store_from_url(server.url_for("pw"), ca_file=str(pki.ca))
            store.write([Point("air_quality", {"park": "demo", "station": "S1"}, {"pm25": 12.5}, time.time_ns())])
            (row,) = server.query("pw", "SELECT * FROM air_quality")
            assert row["pm25"] == 12.5

    def test_an_https_server_with_an_unknown_ca_is_a_retryable_error(self, tmp_path: Path, pki: Pki) -> None:
        """A server certificate the CA file does not vouch for: not written, and kept for a retry (not dropped)."""
        require_binary(InfluxDB1Server.binary)
        tls = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
        with InfluxDB1Server(tmp_path / "influxdb1", tls=tls) as server:
            store = store_from_url(server.url_for("pw"), ca_file=str(pki.other_ca))
            with pytest.raises(StoreError) as exc:
                store.write([Point("air_quality", {"park": "demo", "station": "S1"}, {"pm25": 1.0}, time.time_ns())])
            assert exc.value.retryable and "CERTIFICATE_VERIFY_FAILED" in str(exc.value)

    def test_plain_http_to_an_https_influxd_is_retryable_not_dead_lettered(self, tmp_path: Path, pki: Pki) -> None:
        """influxdb1:// (http) to an HTTPS port: InfluxDB answers 400, which is about the URL, not the data."""
        require_binary(InfluxDB1Server.binary)
        tls = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
        with InfluxDB1Server(tmp_path / "influxdb1", tls=tls) as server:
            store = store_from_url(server.url_for("pw").replace("influxdb1s://", "influxdb1://"))
            with pytest.raises(StoreError) as exc:
                store.write([Point("air_quality", {"park": "demo", "station": "S1"}, {"pm25": 1.0}, time.time_ns())])
            assert exc.value.retryable

    def test_influxdbs_writes_through_the_v2_api_over_https(self, tmp_path: Path, pki: Pki) -> None:
        """influxdbs:// (influxdb-client) to VictoriaMetrics over HTTPS with a token and store.ca_file."""
        require_binary(VictoriaMetricsServer.binary)
        tls = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
        with VictoriaMetricsServer(tmp_path / "victoria", tls=tls) as server:
            store = store_from_url(server.url, token=secret("token"), ca_file=str(pki.ca))
            store.write([Point("air_quality", {"park": "demo", "station": "S1"}, {"pm25": 12.5}, time.time_ns())])
            (series,) = server.export('{__name__="air_quality_pm25"}')
            assert series["values"] == [12.5]
            bad = store_from_url(server.url, token="t", ca_file=str(pki.other_ca))
            with pytest.raises(StoreError) as exc:
                bad.write([Point("air_quality", {"park": "demo", "station": "S1"}, {"pm25": 1.0}, time.time_ns())])
            assert exc.value.retryable
