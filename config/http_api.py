"""The operations endpoint: health, Prometheus metrics and read-only JSON views of the running service.

    GET /healthz       200 {"status": "ok", ...} or 503 {"status": "unhealthy", "reasons": [...]}
    GET /metrics       Prometheus text format (OpenMetrics when the scraper asks for it)
    GET /api/alerts    the active alerts (contract §6 payloads)
    GET /api/vehicles  the vehicles and persons inside the park (empty without gate rules)

Anything else is a 404, any other method a 405, both as JSON. Nothing here changes the service.

It lives in config/ beside cli.py, not in ingest/, because like the CLI it is an outward face of the whole
service: it reads the source, the pipeline, the rules and the alerts, and ingest/ is the layer the others
build on. The server is handed a `ServiceView` (callables read on every request) by the composition root;
`view_of` builds one from the real parts and tests build their own. Its constructor does no I/O: the
socket is bound in `start`, which raises `HttpApiError` if it cannot listen.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from alerts.model import Alert, AlertState
from alerts.runtime import AlertsRuntime
from config.settings import HttpSection
from ingest.errors import ParkWatchError
from ingest.interfaces import BrokerLink
from ingest.pipeline import Pipeline
from rules.park_state import ParkState, Presence
from rules.runner import RulesRunner

log = logging.getLogger(__name__)

ACTIVE_STATES: tuple[AlertState, ...] = ("pending", "firing", "acknowledged")
OUTCOMES = ("sent", "failed", "retried")
REQUEST_TIMEOUT_S = 10.0  # a client that sends nothing for this long is dropped
POLL_S = 0.1  # how soon `stop` is noticed by the serving loop


class HttpApiError(ParkWatchError):
    """The endpoint cannot listen on its address (in use, not a local address, no permission)."""


@dataclass(frozen=True)
class ServiceView:
    """What the endpoint reads. Each callable is called on every request, on the request's own thread."""

    broker_connected: Callable[[], bool]
    broker_reconnects: Callable[[], int]
    counters: Callable[[], Mapping[str, int]]  # received, stored, deadlettered, duplicates, in_spool
    store_status: Callable[[], tuple[bool, str]]  # (the last write succeeded, its error if not)
    store_write_seconds: Callable[[], float]
    rules_late: Callable[[], int]
    rules_errors: Callable[[], int]
    active_alerts: Callable[[], Sequence[Alert]]
    notifications: Callable[[], Mapping[str, Mapping[str, int]]]  # channel -> sent/failed/retried
    inside: Callable[[], Sequence[Presence]]


def view_of(source: BrokerLink, pipeline: Pipeline, rules: RulesRunner, alerts: AlertsRuntime) -> ServiceView:
    """The view of the real service. `rules.engine` is read each time: a reload replaces it."""
    drainer = pipeline.drainer
    return ServiceView(
        broker_connected=lambda: source.connected,
        broker_reconnects=lambda: source.reconnects,
        counters=pipeline.counters,
        store_status=lambda: (drainer.store_ok, drainer.last_error),
        store_write_seconds=lambda: drainer.write_seconds,
        rules_late=lambda: rules.engine.late,
        rules_errors=lambda: rules.engine.errors,
        active_alerts=alerts.manager.active,
        notifications=lambda: _channel_stats(alerts),
        inside=lambda: _inside(rules),
    )


def _channel_stats(alerts: AlertsRuntime) -> dict[str, dict[str, int]]:
    stats = {}
    for name, dispatcher in alerts.dispatchers.items():
        s = dispatcher.stats
        with s.lock:
            stats[name] = {"sent": s.sent, "failed": s.failed, "retried": s.retried}
    return stats


def _inside(rules: RulesRunner) -> list[Presence]:
    state = next((r for r in rules.engine.rules if isinstance(r, ParkState)), None)
    return [] if state is None else [*state.vehicles(), *state.persons()]


def presence_json(p: Presence) -> dict[str, Any]:
    """One vehicle (by plate, as written at the gate) or person (by id) inside the park."""
    who = {"plate": p.shown} if p.subject == "vehicle" else {"person_id": p.shown}
    return {"subject": p.subject, **who, "since": p.since.isoformat(), "gate": p.gate,
            "vehicle_class": p.vehicle_class, "un_number": p.un_number}


class ServiceCollector:
    """A prometheus_client collector that reads the live values on every scrape."""

    def __init__(self, view: ServiceView) -> None:
        self._view = view

    def collect(self) -> Iterable[Metric]:
        v = self._view
        c = v.counters()
        for key, name, text in (
            ("received", "messages_received", "Messages taken from the broker."),
            ("stored", "messages_stored", "Messages written to the store."),
            ("deadlettered", "messages_deadlettered", "Messages refused and sent to the dead-letter output."),
            ("duplicates", "messages_duplicates", "Repeated readings and events, stored once."),
        ):
            yield CounterMetricFamily(f"parkwatch_{name}", text, value=c[key])
        yield GaugeMetricFamily("parkwatch_spool_messages", "Messages kept in the spool, not yet in the store.",
                                value=c["in_spool"])
        yield CounterMetricFamily("parkwatch_store_write_seconds", "Time spent writing batches to the store.",
                                  value=v.store_write_seconds())
        yield GaugeMetricFamily("parkwatch_store_up", "1 if the last write to the store succeeded.",
                                value=int(v.store_status()[0]))
        yield GaugeMetricFamily("parkwatch_broker_connected", "1 while connected to the MQTT broker.",
                                value=int(v.broker_connected()))
        yield CounterMetricFamily("parkwatch_broker_reconnects", "Connections to the broker lost and made again.",
                                  value=v.broker_reconnects())
        yield CounterMetricFamily("parkwatch_rules_late", "Readings too late to fire or clear anything.",
                                  value=v.rules_late())
        yield CounterMetricFamily("parkwatch_rules_errors", "Rule evaluations that raised an error.",
                                  value=v.rules_errors())
        yield self._alerts(v.active_alerts())
        yield self._notifications(v.notifications())

    @staticmethod
    def _alerts(active: Sequence[Alert]) -> Metric:
        family = GaugeMetricFamily("parkwatch_alerts", "Active alerts by state.", labels=["state"])
        by_state = Counter(a.state for a in active)
        for state in ACTIVE_STATES:
            family.add_metric([state], by_state[state])
        return family

    @staticmethod
    def _notifications(channels: Mapping[str, Mapping[str, int]]) -> Metric:
        family = CounterMetricFamily("parkwatch_notifications", "Notification deliveries by channel and outcome.",
                                     labels=["channel", "outcome"])
        for channel in sorted(channels):
            for outcome in OUTCOMES:
                family.add_metric([channel, outcome], channels[channel].get(outcome, 0))
        return family


class HttpApi:
    """The endpoint's server: `start` binds and serves in the thread `http-api`, `stop` closes it."""

    def __init__(self, settings: HttpSection, view: ServiceView) -> None:
        host, _, port = settings.listen.rpartition(":")
        self._host = host.strip("[]")  # [::1]:9812
        self._port = int(port)
        self._spool_limit = settings.spool_limit
        self.view = view
        self.registry = CollectorRegistry()
        self.registry.register(ServiceCollector(view))  # it has no describe(): nothing is read on register
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the configured one before; 0 means any free port)."""
        return self._server.server_address[1] if self._server is not None else self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            raise HttpApiError("the HTTP endpoint is already started")
        server_class = _Server6 if ":" in self._host else _Server
        try:
            self._server = server_class((self._host, self._port), _Handler, self)
        except OSError as exc:
            raise HttpApiError(f"http.listen: cannot listen on {self._host}:{self._port}: {exc}") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_S,), name="http-api",
                                        daemon=True)
        self._thread.start()
        log.info("operations endpoint on %s", self.url)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT_S)
            self._thread = None

    # --- the endpoints, called by the handler on the request's thread ---------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        v = self.view
        connected = v.broker_connected()
        store_ok, store_error = v.store_status()
        in_spool = v.counters()["in_spool"]
        reasons = []
        if not connected:
            reasons.append("broker not connected")
        if not store_ok:
            reasons.append(f"store not reachable: {store_error}"[:500])
        if in_spool > self._spool_limit:
            reasons.append(f"spool holds {in_spool} messages, above the limit of {self._spool_limit}")
        body: dict[str, Any] = {"status": "unhealthy" if reasons else "ok", "reasons": reasons,
                                "broker_connected": connected, "store_ok": store_ok, "in_spool": in_spool,
                                "spool_limit": self._spool_limit}
        return (503 if reasons else 200), body

    def metrics(self, accept: str) -> tuple[bytes, str]:
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def alerts(self) -> list[dict[str, Any]]:
        return [a.to_json_dict() for a in self.view.active_alerts()]

    def vehicles(self) -> list[dict[str, Any]]:
        return [presence_json(p) for p in sorted(self.view.inside(), key=lambda p: p.since)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client does not hold up shutdown

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: HttpApi) -> None:
        self.api = api
        super().__init__(address, handler)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    server_version = "parkwatch"

    def do_GET(self) -> None:
        api = self.server.api
        path = urlsplit(self.path).path
        try:
            if path == "/healthz":
                self._json(*api.health())
            elif path == "/metrics":
                body, content_type = api.metrics(self.headers.get("Accept", ""))
                self._send(200, content_type, body)
            elif path == "/api/alerts":
                self._json(200, api.alerts())
            elif path == "/api/vehicles":
                self._json(200, api.vehicles())
            else:
                self._json(404, {"error": "not found", "path": path[:200]})
        except Exception as exc:  # one failing view must not kill the server: answer 500 and log it
            log.exception("GET %s failed", path[:200])
            self._json(500, {"error": "internal error", "detail": repr(exc)[:300]})

    def _not_allowed(self) -> None:
        self._json(405, {"error": "method not allowed", "allow": ["GET"]}, allow="GET")

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_allowed  # noqa: N815 - http.server's names

    def _json(self, status: int, body: Any, *, allow: str | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self._send(status, "application/json; charset=utf-8", data, allow=allow)

    def _send(self, status: int, content_type: str, body: bytes, *, allow: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if allow is not None:
            self.send_header("Allow", allow)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)
