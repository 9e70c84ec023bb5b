"""paho's decoder with LeanProperties decodes MQTT 5 packets exactly as with paho's own Properties."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import paho_lean
from ingest.paho_lean import LeanProperties

V5 = MQTTProtocolVersion.MQTTv5
PUBLISH_QOS1 = 0x32


def publish_packet(topic: str, payload: bytes, mid: int, properties: bytes = b"\x00") -> bytes:
    """The variable header and payload of a QoS 1 PUBLISH, as paho's decoder receives it."""
    name = topic.encode()
    return struct.pack("!H", len(name)) + name + struct.pack("!H", mid) + properties + payload


def full_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 3600
    props.ContentType = "application/json"
    props.ResponseTopic = "park/demo/replies"
    props.CorrelationData = b"\x01\x02"
    props.UserProperty = ("site", "东区")
    props.UserProperty = ("firmware", "2.1")
    props.SubscriptionIdentifier = 7
    return props


@pytest.fixture
def paho_own() -> Iterator[None]:
    """paho's decoder with its own Properties, restored to what it was afterwards."""
    before = _packet.Properties
    _packet.Properties = Properties  # type: ignore[misc]
    yield
    _packet.Properties = before  # type: ignore[misc]


def decode(packet: bytes) -> _packet.PublishPacket:
    return _packet.decode_publish(PUBLISH_QOS1, packet, V5)


class TestDecoding:
    def test_a_publish_without_properties_decodes_to_the_same_message(self, paho_own: None) -> None:
        packet = publish_packet("park/demo/air/ST0001/reading", b'{"values":{"pm25":20.5}}', 7)
        expected = decode(packet)
        assert paho_lean.install()
        lean = decode(packet)
        assert type(lean.properties) is LeanProperties
        assert (lean.topic, lean.mid, lean.qos, lean.payload) == (expected.topic, expected.mid, 1, expected.payload)
        assert lean.properties.json() == expected.properties.json() == {}
        assert lean.properties.isEmpty()

    def test_a_publish_with_properties_decodes_to_the_same_attributes(self, paho_own: None) -> None:
        packet = publish_packet("park/demo/gate/G1/event", b"{}", 9, full_properties().pack())
        expected = decode(packet)
        paho_lean.install()
        lean = decode(packet)
        assert lean.properties.json() == expected.properties.json()
        assert lean.properties.UserProperty == [("site", "东区"), ("firmware", "2.1")]
        assert lean.payload == b"{}"

    def test_unpacking_again_forgets_what_the_last_packet_had(self) -> None:
        props = LeanProperties(PacketTypes.PUBLISH)
        props.unpack(full_properties().pack())
        assert props.ContentType == "application/json"
        assert props.unpack(b"\x00") == (props, 1)
        assert props.json() == {} and props.packetType == PacketTypes.PUBLISH

    def test_the_rules_of_paho_still_apply_to_set_attributes(self) -> None:
        """Setting a property goes through paho's checks, as before."""
        props = LeanProperties(PacketTypes.PUBLISH)
        with pytest.raises(Exception, match="does not apply to packet type"):
            props.ReceiveMaximum = 10


class TestInstalling:
    def test_installing_twice_is_harmless(self) -> None:
        assert paho_lean.install() and paho_lean.install()
        assert _packet.Properties is LeanProperties

    def test_a_changed_paho_is_left_alone(self, paho_own: None, monkeypatch: pytest.MonkeyPatch) -> None:
        class Other(Properties):
            pass

        monkeypatch.setattr(_packet, "Properties", Other)
        assert not paho_lean.install()
        assert _packet.Properties is Other
