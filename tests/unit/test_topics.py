"""Topic filters: the whole park by default, or a static split of its devices between instances."""

from __future__ import annotations

from typing import Any

import pytest
from paho.mqtt.client import topic_matches_sub

from config.compose import build, subscriptions
from config.settings import settings_from_dict
from ingest.errors import ConfigError
from ingest.topics import Topics

STATIONS = [f"ST{i:02d}" for i in range(10)]
FIRST, SECOND = STATIONS[:5], STATIONS[5:]


def device_topics(station: str = "ST00", gate: str = "G1") -> list[str]:
    """Every topic a station or gate sends on, and an appointment: what an instance may have to take."""
    return [f"park/demo/air/{station}/reading", f"park/demo/air/{station}/hj212", f"park/demo/air/{station}/status",
            f"park/demo/gate/{gate}/event", f"park/demo/gate/{gate}/status", "park/demo/registry/appointment/A1"]


def taken(filters: tuple[str, ...], topic: str) -> bool:
    return any(topic_matches_sub(f, topic) for f in filters)


def listed(**park: Any) -> dict[str, Any]:
    return {"park": park, "mqtt": {"url": "mqtt://127.0.0.1:1883", "client_id": "pw-a", "subscribe": "listed"}}


class TestWholePark:
    def test_default_subscriptions_are_unchanged(self) -> None:
        """By default an instance takes every device of the park through wildcards."""
        assert Topics("demo").subscriptions() == (
            "park/demo/air/+/reading", "park/demo/air/+/hj212", "park/demo/gate/+/event",
            "park/demo/+/+/status", "park/demo/registry/appointment/+",
        )

    def test_default_configuration_subscribes_to_the_whole_park(self) -> None:
        """Without `mqtt.subscribe`, listed stations still come in through the wildcards (and are checked)."""
        settings = settings_from_dict({"park": {"stations": ["ST00"]}}, {})
        assert subscriptions(settings) == Topics("demo").subscriptions()


class TestStaticSplit:
    def test_an_instance_takes_only_its_own_stations(self) -> None:
        """Each instance's filters match every topic of its stations and none of the other instance's."""
        first = Topics("demo").subscriptions_for(FIRST, [])
        second = Topics("demo").subscriptions_for(SECOND, [])
        for station in STATIONS:
            air = [t for t in device_topics(station) if "/air/" in t]
            mine, other = (first, second) if station in FIRST else (second, first)
            assert all(taken(mine, t) for t in air), station
            assert not any(taken(other, t) for t in air), station

    def test_together_the_instances_take_what_one_would(self) -> None:
        """Split in two, the park's device topics are each taken exactly once, as one instance takes them."""
        first = Topics("demo").subscriptions_for(FIRST, ["G1"])
        second = Topics("demo").subscriptions_for(SECOND, ["G2"])
        whole = Topics("demo").subscriptions()
        for station, gate in zip(STATIONS, ["G1"] * 5 + ["G2"] * 5, strict=True):
            for topic in device_topics(station, gate)[:-1]:
                assert taken(first, topic) + taken(second, topic) == 1 == taken(whole, topic), topic

    def test_no_topic_beyond_the_contract(self) -> None:
        """A listed station's other leaves (not in contract §1) are not taken, as with the wildcards."""
        filters = Topics("demo").subscriptions_for(["ST00"], ["G1"])
        assert not taken(filters, "park/demo/air/ST00/debug")
        assert not taken(filters, "park/demo/gate/G1/reading")
        assert not taken(filters, "park/other/air/ST00/reading")

    def test_appointments_go_to_every_instance_with_gates(self) -> None:
        """Appointments are taken by each instance that has gates to check them at, and only by those."""
        appointment = "park/demo/registry/appointment/粤R·A1234"
        assert taken(Topics("demo").subscriptions_for(FIRST, ["G1"]), appointment)
        assert taken(Topics("demo").subscriptions_for([], ["G2"]), appointment)
        assert not taken(Topics("demo").subscriptions_for(SECOND, []), appointment)

    def test_listed_configuration_subscribes_to_its_devices(self) -> None:
        """`mqtt.subscribe = "listed"` turns [park] stations and gates into this instance's filters."""
        settings = settings_from_dict(listed(stations=FIRST, gates=["G1"]), {})
        assert subscriptions(settings) == Topics("demo").subscriptions_for(FIRST, ["G1"])

    def test_listed_without_devices_is_refused(self) -> None:
        """Listing nothing would subscribe to nothing: refused naming mqtt.subscribe."""
        with pytest.raises(ConfigError) as exc:
            build(settings_from_dict(listed(), {}))
        assert exc.value.key == "mqtt.subscribe"

    def test_listed_without_client_id_is_refused(self) -> None:
        """Instances of one park would share the default client id and take each other's session: refused."""
        raw = listed(stations=FIRST)
        del raw["mqtt"]["client_id"]
        with pytest.raises(ConfigError) as exc:
            build(settings_from_dict(raw, {}))
        assert exc.value.key == "mqtt.client_id"

    def test_unknown_mode_is_refused(self) -> None:
        """Only "all" and "listed" are modes."""
        raw = listed(stations=FIRST)
        raw["mqtt"]["subscribe"] = "some"
        with pytest.raises(ConfigError) as exc:
            build(settings_from_dict(raw, {}))
        assert exc.value.key == "mqtt.subscribe"
