"""The operations endpoint: health with its reasons, Prometheus metrics, and read-only JSON views."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerts.model import Alert
from config.compose import build
from config.http_api import HttpApi, HttpApiError, ServiceView
from config.settings import HttpSection, settings_from_dict
from ingest.errors import ConfigError
from ingest.models import GateEvent
from rules.park_state import Presence

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=TZ)


def alert(rule: str, source: str, state: str = "firing") -> Alert:
    return Alert(alert_id=f"{rule}-{source}", rule=rule, source=source, severity="major", state=state,  # type: ignore[arg-type]
                 started_at=T0, updated_at=T0, value=80.0, threshold=75.0, message="PM2.5 high",
                 message_zh="PM2.5 超标")


@dataclass
class FakeService:
    """The values a running service would show, changed by the tests between requests."""

    connected: bool = True
    reconnects: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {
        "received": 10, "stored": 7, "deadlettered": 1, "duplicates": 2, "in_spool": 0})
    store_ok: bool = True
    store_error: str = ""
    write_seconds: float = 0.25
    late: int = 0
    errors: int = 0
    alerts: list[Alert] = field(default_factory=list)
    channels: dict[str, dict[str, int]] = field(default_factory=dict)
    inside: list[Presence] = field(default_factory=list)
    broken: bool = False

    def view(self) -> ServiceView:
        def counters() -> dict[str, int]:
            if self.broken:
                raise RuntimeError("spool not readable")
            return dict(self.counters)

        return ServiceView(
            broker_connected=lambda: self.connected, broker_reconnects=lambda: self.reconnects,
            counters=counters, store_status=lambda: (self.store_ok, self.store_error),
            store_write_seconds=lambda: self.write_seconds, rules_late=lambda: self.late,
            rules_errors=lambda: self.errors, active_alerts=lambda: list(self.alerts),
            notifications=lambda: self.channels, inside=lambda: list(self.inside))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json; charset=utf-8"
        return json.loads(self.body)


def request(api: HttpApi, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def metrics(api: HttpApi) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels), as parsed by prometheus_client."""
    reply = request(api, "/metrics")
    assert reply.status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(reply.body.decode()) for s in family.samples}


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def api(fake: FakeService) -> Iterator[HttpApi]:
    server = HttpApi(HttpSection(listen="127.0.0.1:0", spool_limit=100), fake.view())
    server.start()
    yield server
    server.stop()


class TestHealth:
    def test_all_well_is_200(self, api: HttpApi) -> None:
        """Broker connected, store writing, spool small: 200 with status ok and no reasons."""
        reply = request(api, "/healthz")
        assert reply.status == 200
        body = reply.json()
        assert body["status"] == "ok" and body["reasons"] == []
        assert body["broker_connected"] is True and body["in_spool"] == 0

    def test_broker_not_connected_is_503(self, api: HttpApi, fake: FakeService) -> None:
        """Without the broker the service takes nothing in: 503 naming the broker."""
        fake.connected = False
        reply = request(api, "/healthz")
        assert reply.status == 503
        assert reply.json()["status"] == "unhealthy"
        assert reply.json()["reasons"] == ["broker not connected"]

    def test_failing_store_is_503_with_its_error(self, api: HttpApi, fake: FakeService) -> None:
        """When the drainer's last write failed, the reason carries the store's error."""
        fake.store_ok, fake.store_error = False, "connection refused (127.0.0.1:8086)"
        reasons = request(api, "/healthz").json()["reasons"]
        assert reasons == ["store not reachable: connection refused (127.0.0.1:8086)"]

    def test_spool_above_its_limit_is_503(self, api: HttpApi, fake: FakeService) -> None:
        """More messages in the spool than http.spool_limit: 503 saying how many."""
        fake.counters["in_spool"] = 101
        reply = request(api, "/healthz")
        assert reply.status == 503
        assert reply.json()["reasons"] == ["spool holds 101 messages, above the limit of 100"]

    def test_spool_exactly_at_its_limit_is_healthy(self, api: HttpApi, fake: FakeService) -> None:
        """A spool holding exactly the limit is still healthy."""
        fake.counters["in_spool"] = 100
        assert request(api, "/healthz").status == 200

    def test_every_reason_is_listed(self, api: HttpApi, fake: FakeService) -> None:
        """Several problems at once are all named, not only the first."""
        fake.connected, fake.store_ok, fake.counters["in_spool"] = False, False, 500
        assert len(request(api, "/healthz").json()["reasons"]) == 3

    def test_health_follows_the_live_values(self, api: HttpApi, fake: FakeService) -> None:
        """Health is judged on each request: it turns 503 and back without a restart."""
        fake.connected = False
        assert request(api, "/healthz").status == 503
        fake.connected = True
        assert request(api, "/healthz").status == 200


class TestMetrics:
    def test_pipeline_counters_are_exposed(self, api: HttpApi) -> None:
        """received, stored, dead-lettered, duplicates and the spool size come from the pipeline's counters."""
        m = metrics(api)
        assert m[("parkwatch_messages_received_total", ())] == 10
        assert m[("parkwatch_messages_stored_total", ())] == 7
        assert m[("parkwatch_messages_deadlettered_total", ())] == 1
        assert m[("parkwatch_messages_duplicates_total", ())] == 2
        assert m[("parkwatch_spool_messages", ())] == 0

    def test_store_broker_and_rules_values(self, api: HttpApi, fake: FakeService) -> None:
        """Write latency, broker connection and reconnects, late readings and rule errors."""
        fake.reconnects, fake.late, fake.errors, fake.connected = 3, 5, 1, False
        m = metrics(api)
        assert m[("parkwatch_store_write_seconds_total", ())] == 0.25
        assert m[("parkwatch_store_up", ())] == 1
        assert m[("parkwatch_broker_connected", ())] == 0
        assert m[("parkwatch_broker_reconnects_total", ())] == 3
        assert m[("parkwatch_rules_late_total", ())] == 5
        assert m[("parkwatch_rules_errors_total", ())] == 1

    def test_active_alerts_by_state(self, api: HttpApi, fake: FakeService) -> None:
        """A gauge per active state, zero where there is none."""
        fake.alerts = [alert("pm25_high", "ST01"), alert("pm25_high", "ST02"), alert("h2s", "ST01", "acknowledged")]
        m = metrics(api)
        assert m[("parkwatch_alerts", (("state", "firing"),))] == 2
        assert m[("parkwatch_alerts", (("state", "acknowledged"),))] == 1
        assert m[("parkwatch_alerts", (("state", "pending"),))] == 0

    def test_notifications_by_channel_and_outcome(self, api: HttpApi, fake: FakeService) -> None:
        """sent, failed and retried per channel; a channel name is escaped by the library, not by us."""
        odd = 'ops "night"\\shift'
        fake.channels = {"ops": {"sent": 4, "failed": 1, "retried": 2}, odd: {"sent": 1, "failed": 0, "retried": 0}}
        m = metrics(api)
        assert m[("parkwatch_notifications_total", (("channel", "ops"), ("outcome", "sent")))] == 4
        assert m[("parkwatch_notifications_total", (("channel", "ops"), ("outcome", "failed")))] == 1
        assert m[("parkwatch_notifications_total", (("channel", "ops"), ("outcome", "retried")))] == 2
        assert m[("parkwatch_notifications_total", (("channel", odd), ("outcome", "sent")))] == 1

    def test_each_scrape_reads_the_live_values(self, api: HttpApi, fake: FakeService) -> None:
        """Nothing is cached: a counter that moved shows its new value on the next scrape."""
        assert metrics(api)[("parkwatch_messages_received_total", ())] == 10
        fake.counters["received"] = 11
        assert metrics(api)[("parkwatch_messages_received_total", ())] == 11

    def test_prometheus_text_format_by_default(self, api: HttpApi) -> None:
        """Without an Accept header the body is the Prometheus text format 0.0.4 with HELP and TYPE lines."""
        reply = request(api, "/metrics")
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"# TYPE parkwatch_messages_received_total counter" in reply.body

    def test_openmetrics_when_asked(self, api: HttpApi) -> None:
        """A scraper that asks for OpenMetrics gets it."""
        reply = request(api, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert reply.headers["content-type"].startswith("application/openmetrics-text")
        assert reply.body.rstrip().endswith(b"# EOF")


class TestJsonViews:
    def test_active_alerts_as_contract_payloads(self, api: HttpApi, fake: FakeService) -> None:
        """/api/alerts lists the active alerts as published on MQTT (contract §6), Chinese kept as is."""
        fake.alerts = [alert("pm25_high", "ST01")]
        reply = request(api, "/api/alerts")
        assert reply.status == 200
        assert reply.json() == [fake.alerts[0].to_json_dict()]
        assert "PM2.5 超标".encode() in reply.body

    def test_no_alerts_is_an_empty_list(self, api: HttpApi) -> None:
        """Nothing active: an empty list, not 404."""
        assert request(api, "/api/alerts").json() == []

    def test_vehicles_and_persons_inside_oldest_first(self, api: HttpApi, fake: FakeService) -> None:
        """/api/vehicles lists who is inside with since, gate and class, oldest entry first."""
        fake.inside = [Presence("person", "P-007", T0 + timedelta(hours=1), "G2"),
                       Presence("vehicle", "粤R·A1234", T0, "G1", "hazmat", "1203")]
        assert request(api, "/api/vehicles").json() == [
            {"subject": "vehicle", "plate": "粤R·A1234", "since": T0.isoformat(), "gate": "G1",
             "vehicle_class": "hazmat", "un_number": "1203"},
            {"subject": "person", "person_id": "P-007", "since": (T0 + timedelta(hours=1)).isoformat(),
             "gate": "G2", "vehicle_class": None, "un_number": None},
        ]


class TestRequests:
    def test_unknown_path_is_404_json(self, api: HttpApi) -> None:
        """Anything but the four endpoints is a 404 with a JSON body."""
        reply = request(api, "/api/nothing")
        assert reply.status == 404 and reply.json()["error"] == "not found"

    def test_query_string_is_ignored(self, api: HttpApi) -> None:
        """/healthz?verbose=1 is /healthz."""
        assert request(api, "/healthz?verbose=1").status == 200

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
    def test_only_get_is_allowed(self, api: HttpApi, method: str) -> None:
        """The endpoint is read-only: any other method is 405 naming GET."""
        reply = request(api, "/api/alerts", method)
        assert reply.status == 405
        assert reply.headers["allow"] == "GET" and reply.json()["allow"] == ["GET"]

    def test_a_failing_view_is_500_and_the_server_goes_on(self, api: HttpApi, fake: FakeService) -> None:
        """A view that raises answers 500 with JSON; the next request is served as usual."""
        fake.broken = True
        reply = request(api, "/healthz")
        assert reply.status == 500 and "spool not readable" in reply.json()["detail"]
        fake.broken = False
        assert request(api, "/healthz").status == 200


class TestLifecycle:
    def test_constructor_reads_nothing_and_binds_nothing(self, fake: FakeService) -> None:
        """Building the endpoint neither calls the views nor opens a socket."""
        fake.broken = True
        server = HttpApi(HttpSection(listen="127.0.0.1:0"), fake.view())
        assert server.port == 0

    def test_stop_closes_the_port(self, fake: FakeService) -> None:
        """After stop nothing listens on the port any more; stop twice is harmless."""
        server = HttpApi(HttpSection(listen="127.0.0.1:0"), fake.view())
        server.start()
        port = server.port
        assert port > 0 and server.url == f"http://127.0.0.1:{port}"
        server.stop()
        server.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    def test_a_taken_port_is_an_error_naming_the_key(self, fake: FakeService) -> None:
        """Another process on the port: start raises HttpApiError naming http.listen."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(HttpApiError, match=r"http\.listen"):
                HttpApi(HttpSection(listen=f"127.0.0.1:{port}"), fake.view()).start()


class TestSettings:
    def test_loopback_by_default(self) -> None:
        """Enabled on 127.0.0.1:9812 unless configured otherwise."""
        settings = settings_from_dict({}, {})
        assert settings.http.enabled and settings.http.listen == "127.0.0.1:9812"

    @pytest.mark.parametrize("listen", ["9812", "127.0.0.1:", ":9812", "127.0.0.1:70000", "127.0.0.1:http"])
    def test_listen_must_be_host_and_port(self, listen: str) -> None:
        """http.listen that is not host:port is refused naming the key."""
        with pytest.raises(ConfigError) as exc:
            settings_from_dict({"http": {"listen": listen}}, {})
        assert exc.value.key == "http.listen"

    def test_disabled_means_no_endpoint(self, tmp_path: Path) -> None:
        """enabled = false: the service has no endpoint."""
        service = build(settings_from_dict({"data_dir": str(tmp_path), "http": {"enabled": False}}, {}))
        assert service.http is None


class TestServiceView:
    def test_vehicles_come_from_the_park_state_of_the_gate_rules(self, tmp_path: Path) -> None:
        """With gate rules, /api/vehicles shows who the park state has inside."""
        rules = tmp_path / "rules.toml"
        rules.write_text('[[rule]]\ntype = "exit_without_entry"\nname = "exit_without_entry"\n')
        service = build(settings_from_dict({"data_dir": str(tmp_path), "rules": {"file": str(rules)},
                                            "park": {"gates": ["G1"]}}, {}))
        assert service.http is not None
        event = GateEvent.model_validate({
            "ts": T0, "event_id": "E1", "direction": "in", "subject": "vehicle", "plate": "粤R·A1234",
            "vehicle_class": "truck", "credential": "plate", "granted": True, "gate": "G1"})
        service.rules.engine.process(event, T0)
        assert [(v["plate"], v["gate"], v["vehicle_class"]) for v in service.http.vehicles()] == [
            ("粤R·A1234", "G1", "truck")]

    def test_no_gate_rules_means_no_vehicles(self, tmp_path: Path) -> None:
        """Without gate rules nobody is tracked: an empty list."""
        service = build(settings_from_dict({"data_dir": str(tmp_path)}, {}))
        assert service.http is not None and service.http.vehicles() == []
