"""The MQTT source keeps a persistent session's subscriptions in step with the configured filters."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ingest.mqtt import MqttSettings, MqttSource

OLD = ("park/demo/air/ST00/reading", "park/demo/air/ST04/reading")
NEW = ("park/demo/air/ST00/reading", "park/demo/air/ST05/reading")


class FakeClient:
    """Records what the source asks of paho's client on connect."""

    def __init__(self) -> None:
        self.subscribed: list[tuple[str, Any]] = []
        self.unsubscribed: list[str] = []

    def subscribe(self, topics: list[tuple[str, Any]]) -> None:
        self.subscribed += topics

    def unsubscribe(self, topics: list[str]) -> None:
        self.unsubscribed += topics


def source(tmp_path: Path, filters: tuple[str, ...] = NEW, *, protocol: int = 5) -> MqttSource:
    settings = MqttSettings(client_id="pw-a", protocol=protocol)
    return MqttSource(settings, filters, held_file=tmp_path / "subscriptions.json")


def connect(src: MqttSource, *, resumed: bool) -> FakeClient:
    client = FakeClient()
    src._on_connect(client, None, SimpleNamespace(session_present=resumed),  # type: ignore[arg-type]
                    ReasonCode(PacketTypes.CONNACK, "Success"), None)
    return client


def acks(src: MqttSource, client: FakeClient, *, refused: bool = False) -> None:
    code = ReasonCode(PacketTypes.SUBACK, "Not authorized" if refused else "Granted QoS 1")
    if client.unsubscribed:
        src._on_unsubscribe(client, None, 1, [ReasonCode(PacketTypes.UNSUBACK, "Success")], None)  # type: ignore[arg-type]
    if client.subscribed:
        src._on_subscribe(client, None, 2, [code] * len(client.subscribed), None)  # type: ignore[arg-type]


def remembered(tmp_path: Path) -> list[str]:
    filters: list[str] = json.loads((tmp_path / "subscriptions.json").read_text())["filters"]
    return filters


class TestSubscriptionSync:
    def test_a_new_session_subscribes_every_filter_and_remembers_them(self, tmp_path: Path) -> None:
        """A new session gets every filter; once the broker grants them, the list is remembered."""
        src = source(tmp_path)
        client = connect(src, resumed=False)
        assert [t for t, _ in client.subscribed] == list(NEW) and not client.unsubscribed
        acks(src, client)
        assert remembered(tmp_path) == list(NEW)

    def test_a_resumed_session_gets_only_the_difference(self, tmp_path: Path) -> None:
        """A station moved away is unsubscribed, one moved in is subscribed; the others are left alone."""
        old = source(tmp_path, OLD)
        acks(old, connect(old, resumed=False))
        src = source(tmp_path)
        client = connect(src, resumed=True)
        assert [t for t, _ in client.subscribed] == ["park/demo/air/ST05/reading"]
        assert client.unsubscribed == ["park/demo/air/ST04/reading"]
        acks(src, client)
        assert remembered(tmp_path) == list(NEW)

    def test_an_unchanged_resumed_session_sends_nothing(self, tmp_path: Path) -> None:
        """A restart with the same filters neither subscribes (no retained replay) nor unsubscribes."""
        src = source(tmp_path)
        acks(src, connect(src, resumed=False))
        client = connect(src, resumed=True)
        assert client.subscribed == [] and client.unsubscribed == []

    def test_unknown_filters_of_a_resumed_mqtt5_session_are_subscribed_again(self, tmp_path: Path) -> None:
        """Nothing remembered (or for another client id): MQTT 5 subscribes all, retained only if new."""
        (tmp_path / "subscriptions.json").write_text(json.dumps({"session": "other@h:1", "filters": list(NEW)}))
        client = connect(source(tmp_path), resumed=True)
        assert [t for t, _ in client.subscribed] == list(NEW)
        assert all(options.retainHandling == 1 for _, options in client.subscribed)

    def test_unknown_filters_of_a_resumed_mqtt311_session_are_left(self, tmp_path: Path) -> None:
        """MQTT 3.1.1 has no retain handling: a resumed session of unknown filters is assumed to hold them."""
        client = connect(source(tmp_path, protocol=4), resumed=True)
        assert client.subscribed == [] and client.unsubscribed == []

    def test_a_refused_subscription_is_not_remembered(self, tmp_path: Path) -> None:
        """If the broker refuses, nothing is remembered, so the next connection asks again."""
        src = source(tmp_path)
        acks(src, connect(src, resumed=False), refused=True)
        assert not (tmp_path / "subscriptions.json").exists()
        assert [t for t, _ in connect(src, resumed=True).subscribed] == list(NEW)
