"""paho made cheaper per message: LeanProperties decodes MQTT 5 packets exactly as paho's own Properties;
BufferedSocket serves paho's small reads from one system call; LeanClient keeps paho's behaviour."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import paho_lean
from ingest.paho_lean import BufferedSocket, LeanClient, LeanMatcher, LeanProperties, _parse_publish, read_buffered

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


class RecordingSocket:
    """A non-blocking socket's reading side: hands out `chunks` one recv at a time, then would block."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.reads: list[int] = []
        self.buffers: set[int] = set()
        self.closed = False

    def recv_into(self, buffer: bytearray) -> int:
        self.reads.append(len(buffer))
        self.buffers.add(id(buffer))
        if not self.chunks:
            raise BlockingIOError
        chunk, rest = self.chunks[0][: len(buffer)], self.chunks[0][len(buffer) :]
        if rest:
            self.chunks[0] = rest
        else:
            self.chunks.pop(0)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def setblocking(self, flag: bool) -> None:
        self.blocking = flag

    def close(self) -> None:
        self.closed = True


def buffered(*chunks: bytes) -> tuple[BufferedSocket, RecordingSocket]:
    raw = RecordingSocket(*chunks)
    return BufferedSocket(raw), raw  # type: ignore[arg-type]


class TestBufferedSocket:
    def test_small_reads_are_served_from_one_read_of_the_socket(self) -> None:
        sock, raw = buffered(b"\x30\x05hello\x30\x02hi")
        got = [sock.recv(1), sock.recv(1), sock.recv(5), sock.recv(1), sock.recv(1), sock.recv(2)]
        assert got == [b"\x30", b"\x05", b"hello", b"\x30", b"\x02", b"hi"]
        assert len(raw.reads) == 1 and raw.reads[0] >= 256 * 1024

    def test_pending_is_what_the_buffer_still_holds(self) -> None:
        sock, _ = buffered(b"abcdef")
        assert sock.pending() == 0
        assert sock.recv(2) == b"ab"
        assert sock.pending() == 4
        assert sock.recv(10) == b"cdef"  # a short read: what the buffer had, no second system call
        assert sock.pending() == 0

    def test_an_empty_buffer_reads_the_socket_again_and_passes_its_errors_on(self) -> None:
        sock, raw = buffered(b"ab", b"cd")
        assert sock.recv(1) == b"a" and sock.recv(1) == b"b"
        assert sock.recv(1) == b"c"
        assert sock.recv(1) == b"d"
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        assert len(raw.reads) == 3

    def test_every_read_goes_into_the_one_buffer_of_the_connection(self) -> None:
        """No 256 KB allocation per read: live traffic brings a message or two per read."""
        sock, raw = buffered(b"a", b"b", b"c")
        assert [sock.recv(1) for _ in range(3)] == [b"a", b"b", b"c"]
        assert len(raw.reads) == 3 and len(raw.buffers) == 1

    def test_the_end_of_the_stream_comes_through_as_empty_bytes(self) -> None:
        sock, _ = buffered(b"")
        assert sock.recv(1) == b""

    def test_a_read_the_caller_can_take_whole_is_not_copied_into_the_buffer(self) -> None:
        sock, _ = buffered(b"xyz")
        assert sock.recv(300_000) == b"xyz"
        assert sock.pending() == 0

    def test_everything_but_reading_is_the_socket_s(self) -> None:
        sock, raw = buffered(b"abc")
        sock.recv(1)
        sock.setblocking(False)
        assert raw.blocking is False
        sock.close()
        assert raw.closed and sock.pending() == 0


class TestLeanClient:
    def test_messages_skip_the_empty_callback_tree(self) -> None:
        matcher = LeanMatcher()
        assert list(matcher.iter_match("park/demo/air/ST01/reading")) == []

    def test_per_filter_callbacks_still_match_as_in_paho(self) -> None:
        matcher, own = LeanMatcher(), MQTTMatcher()
        for m in (matcher, own):
            m["park/+/air/#"] = "air"
            m["park/demo/gate/G1/event"] = "gate"
        for topic in ("park/demo/air/ST01/reading", "park/demo/gate/G1/event", "other/topic", "$SYS/x"):
            assert list(matcher.iter_match(topic)) == list(own.iter_match(topic))

    def test_the_client_uses_the_lean_matcher_and_keeps_paho_s_api(self) -> None:
        client = LeanClient(CallbackAPIVersion.VERSION2, client_id="lean-test")
        assert isinstance(client._on_message_filtered, LeanMatcher)
        client.message_callback_add("park/+/air/#", lambda *_: None)
        assert list(client._on_message_filtered.iter_match("park/demo/air/ST01/reading"))

    def test_reading_the_buffer_asks_nothing_of_a_client_without_one(self) -> None:
        client = LeanClient(CallbackAPIVersion.VERSION2, client_id="lean-test")
        assert read_buffered(client) == MQTTErrorCode.MQTT_ERR_SUCCESS  # not connected: no socket

    def test_a_batch_of_acks_is_queued_whole_and_wakes_the_loop_once(self) -> None:
        client = LeanClient(CallbackAPIVersion.VERSION2, client_id="lean-test", manual_ack=True)
        client.on_socket_register_write = lambda *_: None  # an outside loop writes, as in MqttSource
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        client._sockpairR, client._sockpairW = reader, writer
        try:
            client.ack_all([1, 2, 3])
            client.ack_all([4])
            assert [p["mid"] for p in client._out_packet] == [1, 2, 3, 4]
            assert reader.recv(100) == b"00"  # one wake-up per batch, not per message
            client.ack(5, 1)  # a packet queued outside a batch still wakes the loop itself
            assert reader.recv(100) == b"0"
            assert [p["mid"] for p in client._out_packet] == [1, 2, 3, 4, 5]
        finally:
            reader.close()
            writer.close()


# ------------------------------------------------------------------- PUBLISH packets read in place


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def whole_publish(topic: bytes, payload: bytes, *, qos: int = 1, mid: int = 1, retain: bool = False,
                  dup: bool = False, properties: bytes = b"\x00") -> bytes:
    """A complete MQTT 5 PUBLISH packet, fixed header included."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"") + properties + payload
    command = 0x30 | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0)
    return bytes([command]) + remaining_length(len(body)) + body


packets = st.one_of(
    st.builds(
        whole_publish,
        st.one_of(st.just(b"park/demo/air/ST0001/reading"), st.binary(max_size=40)),
        st.binary(max_size=300),
        qos=st.sampled_from([0, 1]),
        mid=st.integers(min_value=1, max_value=65535),
        retain=st.booleans(),
        dup=st.booleans(),
        properties=st.sampled_from([b"\x00", full_properties().pack()]),
    ),
    st.just(b"\xd0\x00"),  # PINGRESP
)


def delivered(client: paho.Client, chunks: list[bytes]) -> list[tuple[object, ...]]:
    """What the client's on_message gets from a connection that brings `chunks`, read as MqttSource reads."""
    got: list[tuple[object, ...]] = []

    def on_message(c: paho.Client, userdata: object, m: paho.MQTTMessage) -> None:
        props = m.properties.json() if m.properties is not None else None
        got.append((m._topic, bytes(m.payload), m.mid, m.qos, m.retain, m.dup, props))

    client.on_message = on_message
    sock = BufferedSocket(RecordingSocket(*chunks))  # type: ignore[arg-type]
    client._sock = sock
    while True:
        rc = client.loop_read()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = read_buffered(client)
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            got.append(("rc", rc))
            return got
        if not sock.pending() and not sock._sock.chunks:  # type: ignore[attr-defined]
            return got


class TestReadingPublishesInPlace:
    """LeanClient.read_publish takes common PUBLISH packets from the buffer; paho gets everything else."""

    @settings(max_examples=200)
    @given(st.lists(packets, min_size=1, max_size=30), st.data())
    def test_messages_are_delivered_as_paho_delivers_them(self, stream: list[bytes], data: st.DataObject) -> None:
        """Any stream of packets, cut anywhere into reads, gives on_message the same messages in order."""
        whole = b"".join(stream)
        cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(whole)), max_size=6)))
        chunks = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True) if b > a]
        options = {"client_id": "lean-test", "protocol": V5, "manual_ack": True}
        lean = delivered(LeanClient(CallbackAPIVersion.VERSION2, **options), chunks)
        own = delivered(paho.Client(CallbackAPIVersion.VERSION2, **options), chunks)
        assert lean == own

    def test_a_common_publish_is_taken_whole(self) -> None:
        packet = whole_publish(b"park/demo/air/ST0001/reading", b'{"v":1}', mid=300, retain=True)
        end, command, topic, mid, payload = _parse_publish(b"xx" + packet + b"\xd0", 2)  # type: ignore[misc]
        assert (end, command & 0x0F, topic, mid, payload) == (2 + len(packet), 0x03, b"park/demo/air/ST0001/reading",
                                                                300, b'{"v":1}')

    @pytest.mark.parametrize(
        "packet",
        [
            whole_publish(b"t", b"p", qos=2),
            whole_publish(b"t", b"p", properties=full_properties().pack()),
            whole_publish(b"", b"p"),  # an empty topic: a topic alias, paho's to read
            whole_publish(b"t", b"payload")[:-1],  # not complete yet
            b"\x32\xff\xff\xff\xff\x7f",  # a remaining length of five bytes
            b"\x32\x03\x00\x09t",  # a topic longer than the packet
            b"\x40\x02\x00\x01",  # PUBACK
            b"\x32",
        ],
    )
    def test_anything_else_is_left_to_paho(self, packet: bytes) -> None:
        assert _parse_publish(packet, 0) is None

    def test_a_received_message_builds_its_info_only_when_asked(self) -> None:
        message = paho_lean.LeanMessage(5, b"t")
        assert "info" not in message.__dict__
        assert message.info.mid == 5
