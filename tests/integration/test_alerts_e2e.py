"""Alerts end to end: a reading crosses a limit at a real broker, the webhook hears of it once, a late
client sees the active alert retained, an acknowledgement through the broker is applied, the alert
resolves, and every change lands in the store. The outbox survives a SIGKILL."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from config.cli import main
from tests.integration.harness import ServiceProcess, eventually, write_config
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration
RULES = """
[[rule]]
type = "threshold"
name = "pm25_high"
value = "pm25"
levels = [{ severity = "major", above = 75.0, clear = 65.0 }]
"""


class Webhook:
    """A local HTTP server that records JSON posts and answers with a scripted status."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.status == 200:
                    hook.posts.append(json.loads(body))
                    hook.keys.append(self.headers.get("Idempotency-Key", ""))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


class Watcher:
    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"w-{uuid.uuid4().hex[:6]}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish(port: int, topic: str, body: dict[str, Any]) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def reading(pm25: float, minutes: int) -> dict[str, Any]:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1) + timedelta(minutes=minutes)
    return {"ts": ts.isoformat(), "values": {"pm25": pm25}}


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def service(tmp_path: Path, mosquitto: MosquittoServer, webhook: Webhook) -> Iterator[ServiceProcess]:
    (tmp_path / "rules.toml").write_text(RULES)
    config = write_config(
        tmp_path / "parkwatch.toml", mqtt_url=mosquitto.url, store_url=f"sqlite://{tmp_path / 'store.db'}",
        data_dir=tmp_path / "data", rules={"file": str(tmp_path / "rules.toml"), "tick_s": 0.2},
        alerts={"tick_s": 0.2, "templates": {"language": "both"},
                "channel": [{"type": "webhook", "name": "ops", "url": webhook.url}],
                "route": [{"channels": ["ops"], "notify": ["firing", "acknowledged", "resolved"]}]},
    )
    proc = ServiceProcess(config, tmp_path)
    yield proc
    proc.stop_quietly()


def test_alert_lifecycle_through_the_broker(
    service: ServiceProcess, mosquitto: MosquittoServer, webhook: Webhook, tmp_path: Path
) -> None:
    """Firing, a late client seeing it retained, ack over MQTT, resolved: each told to the webhook once."""
    service.start()
    topic = "park/demo/air/ST01/reading"
    publish(mosquitto.port, topic, reading(80.0, 0))
    assert eventually(lambda: len(webhook.posts) == 1, 15), service.log()[-2000:]
    alert = webhook.posts[0]["alerts"][0]
    assert (alert["rule"], alert["source"], alert["state"], alert["severity"]) == ("pm25_high", "ST01", "firing",
                                                                                   "major")
    late = Watcher(mosquitto.port, "park/demo/alerts/active/#")
    assert eventually(lambda: len(late.messages) == 1, 10)
    _, payload, retained = late.messages[0]
    assert retained and json.loads(payload)["alert_id"] == alert["alert_id"]
    assert main(["ack", alert["alert_id"], "--by", "duty", "--note", "checking",
                 "--config", str(service.config)]) == 0
    assert eventually(lambda: len(webhook.posts) == 2, 15)
    assert webhook.posts[1]["alerts"][0]["state"] == "acknowledged"
    assert webhook.posts[1]["alerts"][0]["acknowledged_by"] == "duty"
    publish(mosquitto.port, topic, reading(60.0, 1))
    assert eventually(lambda: len(webhook.posts) == 3, 15)
    assert webhook.posts[2]["alerts"][0]["state"] == "resolved"
    assert len(set(webhook.keys)) == 3
    fresh = Watcher(mosquitto.port, "park/demo/alerts/active/#")
    time.sleep(1.0)
    assert fresh.messages == [], "a resolved alert must not stay retained"
    service.terminate()
    rows = sqlite3.connect(tmp_path / "store.db").execute("SELECT state FROM alert ORDER BY time").fetchall()
    assert [r[0] for r in rows] == ["firing", "acknowledged", "resolved"]
    late.close()
    fresh.close()


def test_queued_notification_survives_sigkill_and_is_sent_once(
    service: ServiceProcess, mosquitto: MosquittoServer, webhook: Webhook
) -> None:
    """A notification queued while the webhook fails is sent after a SIGKILL and restart, exactly once."""
    webhook.status = 503
    service.start()
    publish(mosquitto.port, "park/demo/air/ST01/reading", reading(90.0, 0))
    assert eventually(lambda: "retrying" in service.log(), 15), service.log()[-2000:]
    service.kill()
    webhook.status = 200
    service.start()
    assert eventually(lambda: len(webhook.posts) == 1, 30), service.log()[-2000:]
    time.sleep(1.5)
    assert len(webhook.posts) == 1
    assert webhook.posts[0]["alerts"][0]["state"] == "firing"
