"""The operations endpoint of a real service: its metrics agree with the pipeline, its health follows the broker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.compose import Service, build
from config.settings import settings_from_dict
from tests.integration.harness import eventually
from tests.integration.test_service import publish_all
from tests.servers import MosquittoServer, http_get

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
RULES = """
[[rule]]
type = "threshold"
name = "pm25_high"
value = "pm25"
stations = ["*"]
levels = [{ severity = "major", above = 75.0, clear = 65.0 }]

[[rule]]
type = "exit_without_entry"
name = "exit_without_entry"
"""


def reading(station: str, i: int, pm25: float) -> tuple[str, bytes]:
    body = {"ts": (NOW + timedelta(seconds=i)).isoformat(), "values": {"pm25": pm25}}
    return f"park/demo/air/{station}/reading", json.dumps(body).encode()


def truck_in() -> tuple[str, bytes]:
    body = {"ts": NOW.isoformat(), "event_id": "E1", "direction": "in", "subject": "vehicle", "plate": "粤R·A1234",
            "vehicle_class": "truck", "credential": "plate", "granted": True}
    return "park/demo/gate/G1/event", json.dumps(body, ensure_ascii=False).encode()


def get(service: Service, path: str) -> tuple[int, bytes]:
    assert service.http is not None
    return http_get(f"{service.http.url}{path}")


def get_json(service: Service, path: str) -> Any:
    return json.loads(get(service, path)[1])


def scrape(service: Service) -> dict[str, float]:
    """The unlabelled samples of /metrics by name, as parsed by prometheus_client."""
    status, body = get(service, "/metrics")
    assert status == 200
    return {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples if not s.labels}


@pytest.fixture
def service(tmp_path: Path, mosquitto: MosquittoServer) -> Iterator[Service]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    raw = {
        "data_dir": str(tmp_path / "data"),
        "mqtt": {"url": mosquitto.url, "client_id": f"pw-{uuid.uuid4().hex[:6]}", "keepalive_s": 5},
        "store": {"url": f"sqlite://{tmp_path / 'store.db'}", "flush_interval_s": 0.1},
        "rules": {"file": str(rules)},
        "http": {"listen": "127.0.0.1:0"},
    }
    svc = build(settings_from_dict(raw, {}))
    svc.start()
    assert svc.source.wait_connected(10)
    time.sleep(0.3)  # let the SUBSCRIBE reach the broker before the first publish
    yield svc
    svc.stop()


def test_metrics_match_the_pipeline_and_health_follows_the_broker(
    service: Service, mosquitto: MosquittoServer
) -> None:
    """Readings, a bad message, a truck and an alert show up on every endpoint; without the broker it is 503."""
    assert service.http is not None and service.http.port > 0
    good = [reading("ST01", i, 20.0) for i in range(5)] + [reading("ST02", 0, 90.0)]
    publish_all(mosquitto.port, [*good, ("park/demo/air/ST01/reading", b"{not json"), truck_in()])

    def idle() -> bool:
        c = service.pipeline.counters()
        return c["received"] == 8 and c["in_spool"] == 0

    assert eventually(idle, 15), service.pipeline.counters()
    counters = service.pipeline.counters()
    metrics = scrape(service)
    assert metrics["parkwatch_messages_received_total"] == counters["received"] == 8
    assert metrics["parkwatch_messages_stored_total"] == counters["stored"] == 7
    assert metrics["parkwatch_messages_deadlettered_total"] == counters["deadlettered"] == 1
    assert metrics["parkwatch_spool_messages"] == 0
    assert metrics["parkwatch_broker_connected"] == 1
    assert metrics["parkwatch_store_write_seconds_total"] > 0

    assert eventually(lambda: len(get_json(service, "/api/alerts")) == 1, 10)
    assert get_json(service, "/api/alerts")[0]["source"] == "ST02"
    assert eventually(lambda: get_json(service, "/api/vehicles") != [], 10)
    assert [v["plate"] for v in get_json(service, "/api/vehicles")] == ["粤R·A1234"]

    status, body = get(service, "/healthz")
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"

    mosquitto.stop()
    assert eventually(lambda: get(service, "/healthz")[0] == 503, 10)
    assert "broker not connected" in get_json(service, "/healthz")["reasons"]
    assert scrape(service)["parkwatch_broker_connected"] == 0
