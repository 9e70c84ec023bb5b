"""The composition root: the one place that builds the running service from validated settings.

Everything is compiled here, before anything starts: the store from its URL, the MQTT client settings,
the decoder's tables. Building does no I/O, so ``parkwatch check-config`` is just ``build``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from alerts.manager import AlertManager
from alerts.mqtt import AlertLink
from alerts.notifiers.config import NOTIFIERS
from alerts.render import Renderer
from alerts.routing import Router
from alerts.runtime import AlertsRuntime, StoreChannel
from config.http_api import HttpApi, view_of
from config.settings import GatewaySection, Settings, parse_mqtt_url, revealed
from ingest import hj212
from ingest.decode import Decoder, DecodeSettings
from ingest.drain import DrainSettings
from ingest.drain_process import DrainerProcess, DrainerSpec
from ingest.embedded_broker import EmbeddedBroker
from ingest.errors import ConfigError
from ingest.hj212_gateway import GatewayPublisher, Hj212Gateway
from ingest.interfaces import BrokerLink, Store
from ingest.mqtt import MqttSettings, MqttSource
from ingest.pipeline import RELEASE_SYNCHRONOUS, Pipeline, PipelineSettings
from ingest.points import Point
from ingest.retry import RetryPolicy
from ingest.security import redact_url
from ingest.spool import DerivedWriter
from ingest.stores import StoreFactory
from ingest.topics import Topics
from ingest.worker import IngestWorker, MqttSourceFactory, WorkerSpec
from rules.config import Park
from rules.runner import RulesRunner
from rules.signals import SignalSink

log = logging.getLogger(__name__)


@dataclass
class Service:
    """The running service: an optional embedded broker, the MQTT source, the pipeline, the store, and the
    optional HJ 212 TCP gateway with its own MQTT publisher."""

    settings: Settings
    source: BrokerLink  # the MQTT source, or the ingest worker that owns it
    pipeline: Pipeline
    store: Store
    broker: EmbeddedBroker | None
    mqtt_url: str
    store_url: str
    rules: RulesRunner
    alerts: AlertsRuntime
    gateway: Hj212Gateway | None = None
    gateway_publisher: GatewayPublisher | None = None
    http: HttpApi | None = None  # the operations endpoint (/healthz, /metrics, /api/...)

    def start(self) -> None:
        if self.broker is not None:
            self.broker.start()
        self.settings.data_path.mkdir(parents=True, exist_ok=True)
        self.alerts.start()
        self.rules.start()
        self.pipeline.start()
        if self.http is not None:
            self.http.start()
        if self.gateway is not None and self.gateway_publisher is not None:
            self.gateway_publisher.start()
            self.gateway.start()

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        if self.gateway is not None and self.gateway_publisher is not None:
            self.gateway.stop()
            self.gateway_publisher.stop()
        self.pipeline.stop()
        self.rules.stop()
        self.alerts.stop()
        self.store.close()
        if self.broker is not None:
            self.broker.stop()


def mqtt_settings(settings: Settings) -> MqttSettings:
    m = settings.mqtt
    url = m.url or f"mqtt://{settings.embedded.host}:{settings.embedded.port}"
    host, port, tls, user, password = parse_mqtt_url(url)
    username = m.username if m.username is not None else user
    password = m.password.get_secret_value() if m.password is not None else password
    if password is not None and username is None:
        raise ConfigError("mqtt.username", "a password is configured but no user name")
    if not tls and (m.ca_file or m.cert_file or m.key_file):
        raise ConfigError("mqtt.url", "ca_file, cert_file or key_file is set: the URL must be mqtts:// (TLS)")
    return MqttSettings(
        host=host,
        port=port,
        client_id=m.client_id or f"parkwatch-{settings.park.id}",
        username=username,
        password=password,
        tls=tls,
        ca_file=m.ca_file,
        cert_file=m.cert_file,
        key_file=m.key_file,
        protocol=4 if settings.embedded_broker else m.protocol,  # amqtt speaks MQTT 3.1.1 only
        keepalive_s=m.keepalive_s,
        receive_maximum=m.receive_maximum,
        session_expiry_s=m.session_expiry_s,
    )


def decode_settings(settings: Settings) -> DecodeSettings:
    factors = dict(hj212.DEFAULT_FACTORS)
    if settings.hj212.vendor_aliases:
        factors.update(hj212.VENDOR_ALIASES)
    factors.update(settings.hj212.factors)
    return DecodeSettings(
        park=settings.park.id,
        tz=settings.park.tz,
        max_payload=settings.ingest.max_payload_bytes,
        max_clock_skew=timedelta(seconds=settings.ingest.max_clock_skew_s),
        stations=frozenset(settings.park.stations),
        gates=frozenset(settings.park.gates),
        factor_map=factors,
        lenient_length_stations=frozenset(settings.hj212.lenient_length_stations),
    )


def build(settings: Settings, *, now_ns: Callable[[], int] = time.time_ns) -> Service:
    """Compile settings into a Service that is ready to start. Raises ConfigError; does no I/O."""
    s = settings
    store_factory = StoreFactory(s.store_url, revealed(s.store.token), s.store.username, revealed(s.store.password),
                                 s.store.timeout_s, s.store.ca_file)
    store = store_factory()  # also where a bad [store] is refused, before anything starts
    if s.store.retry_cap_s < s.store.retry_initial_s:
        raise ConfigError("store.retry_cap_s", "must not be below store.retry_initial_s")
    topics = Topics(s.park.id)
    mqtt = mqtt_settings(s)
    held_file = s.data_path / "subscriptions.json"
    pipeline_settings = PipelineSettings(
        spool_path=s.data_path / "spool.db",
        deadletter_log=s.data_path / "deadletter.jsonl",
        deadletter_topic=topics.deadletter,
        drain=DrainSettings(
            batch_size=s.store.batch_size,
            flush_interval_s=s.store.flush_interval_s,
            flush_idle_s=s.store.flush_idle_s,
            retry=RetryPolicy(initial_s=s.store.retry_initial_s, cap_s=s.store.retry_cap_s),
        ),
        max_batch=s.ingest.max_batch,
        backlog_batch=s.ingest.backlog_batch,
        linger_s=s.ingest.linger_ms / 1000,
        dedup_window_s=s.spool.dedup_window_h * 3600,
        synchronous=s.spool.synchronous.upper(),
        shutdown_drain_s=s.spool.shutdown_drain_s,
    )
    source: BrokerLink
    drainer = None
    if s.store.drainer == "process":
        drainer = DrainerProcess(DrainerSpec(store_factory, pipeline_settings.spool_path, pipeline_settings.drain,
                                             RELEASE_SYNCHRONOUS))
    if s.ingest.worker == "process":
        worker = IngestWorker(WorkerSpec(MqttSourceFactory(mqtt, subscriptions(s), held_file), decode_settings(s),
                                         pipeline_settings))
        source, pipeline = worker, Pipeline(worker, store, pipeline_settings, now_ns=now_ns, drainer=drainer)
    else:
        mqtt_source = MqttSource(mqtt, subscriptions(s), held_file=held_file, now_ns=now_ns)
        source = mqtt_source
        pipeline = Pipeline.in_process(mqtt_source, Decoder(decode_settings(s), now_ns), store, pipeline_settings,
                                       now_ns=now_ns, drainer=drainer)
    broker = EmbeddedBroker(s.embedded.host, s.embedded.port) if s.embedded_broker else None
    alerts = build_alerts(s, mqtt, pipeline_settings.spool_path)
    rules = build_rules(s, alerts.manager)
    pipeline.add_listener(rules.feed)
    service = Service(s, source, pipeline, store, broker, mqtt.url, redact_url(s.store_url),
                      rules, alerts)
    if s.hj212.gateway.enabled:
        service.gateway_publisher, service.gateway = build_gateway(s, now_ns=now_ns)
    if s.http.enabled:
        service.http = HttpApi(s.http, view_of(source, pipeline, rules, alerts))
    return service


def subscriptions(settings: Settings) -> tuple[str, ...]:
    """The whole park, or with `mqtt.subscribe = "listed"` only this instance's own stations and gates."""
    s = settings
    topics = Topics(s.park.id)
    if s.mqtt.subscribe == "all":
        return topics.subscriptions()
    if not s.park.stations and not s.park.gates:
        raise ConfigError("mqtt.subscribe", "'listed' needs [park] stations and/or gates to subscribe to")
    if s.mqtt.client_id is None:
        raise ConfigError("mqtt.client_id", "must be set, and differ between instances, with mqtt.subscribe = 'listed'")
    return topics.subscriptions_for(s.park.stations, s.park.gates)


def park_of(settings: Settings, derived: Callable[[list[Point]], None] | None = None) -> Park:
    return Park(settings.park.tz, settings.park.stations, settings.park.gates, id=settings.park.id, derived=derived)


def build_rules(settings: Settings, sink: SignalSink) -> RulesRunner:
    """The rules thread; the rules file is read and compiled here, so a bad one stops the start."""
    path = Path(settings.rules.file) if settings.rules.file else None
    derived = DerivedWriter(settings.data_path / "spool.db", f"park/{settings.park.id}/air/derived")
    return RulesRunner(path, park_of(settings, derived), sink, state_path=settings.data_path / "rules_state.json",
                       tick_s=settings.rules.tick_s, save_every_s=settings.rules.save_every_s)


def build_alerts(settings: Settings, mqtt: MqttSettings, spool_path: Path) -> AlertsRuntime:
    """The alerts layer: manager, notifiers by channel name, the MQTT link and the store channel."""
    a = settings.alerts
    notifiers = {c.name: NOTIFIERS[c.type](c) for c in a.channel if c.type in NOTIFIERS}
    mqtt_names = {c.name for c in a.channel if c.type == "mqtt"}
    park = settings.park.id

    def link(manager: AlertManager) -> AlertLink:
        return AlertLink(mqtt, park, manager.ack)

    return AlertsRuntime(settings.data_path / "alerts.db", Router(a.route, a.silence), Renderer(a.templates),
                         link=link, store=StoreChannel(spool_path, park), notifiers=notifiers,
                         mqtt_aliases=mqtt_names, tick_s=a.tick_s)


def build_gateway(
    settings: Settings, *, listen: str | None = None, now_ns: Callable[[], int] = time.time_ns
) -> tuple[GatewayPublisher, Hj212Gateway]:
    """The HJ 212 TCP gateway and its MQTT publisher (client id + "-gateway"); `listen` overrides the config."""
    section = settings.hj212.gateway
    if listen is not None:
        try:
            section = GatewaySection.model_validate({**section.model_dump(), "listen": listen})
        except ValidationError as exc:
            raise ConfigError("--listen", exc.errors(include_url=False)[0]["msg"]) from None
    mqtt = mqtt_settings(settings)
    mqtt = replace(mqtt, client_id=f"{mqtt.client_id}-gateway")
    publisher = GatewayPublisher(mqtt, timeout_s=section.publish_timeout_s)
    return publisher, Hj212Gateway(section, publisher, park=settings.park.id, now_ns=now_ns)
