"""The HJ 212 TCP gateway (ingest/hj212_gateway.py): real loopback sockets, a fake publisher, no broker."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from config.settings import GatewaySection
from ingest import hj212
from ingest.hj212_gateway import GatewayError, GatewayPublisher, Hj212Gateway
from ingest.mqtt import MqttSettings

TZ = ZoneInfo("Asia/Shanghai")
DATA_TIME = datetime(2026, 11, 27, 8, 0, tzinfo=TZ)
FRAMES = "park/demo/air/+/hj212"


def frame(i: int = 0, *, mn: str = "MN01", flag: int = 5) -> bytes:
    """A real-time upload with its own QN, with CR LF."""
    return hj212.encode_readings(mn, "2011", DATA_TIME, {"pm25": float(i)}, tz=TZ, flag=flag,
                                 qn=f"20261127080000{i:03d}")


def qn_of(raw: bytes) -> str | None:
    return hj212.decode_frame(raw).qn


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class FakePublisher:
    """Accepts everything (or fails with `error`); with `hold`, each publish waits for `release()`."""

    def __init__(self, *, hold: bool = False, error: GatewayError | None = None) -> None:
        self.hold = hold
        self.error = error
        self.accepted: list[tuple[str, bytes]] = []
        self.held: queue.Queue[asyncio.Future[None]] = queue.Queue()

    async def publish(self, topic: str, payload: bytes) -> None:
        if self.error is not None:
            raise self.error
        if self.hold:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.held.put(future)
            await future
        self.accepted.append((topic, payload))

    def release(self) -> None:
        future = self.held.get(timeout=5)
        future.get_loop().call_soon_threadsafe(future.set_result, None)

    def frames(self) -> list[tuple[str, bytes]]:
        return [(t, p) for t, p in self.accepted if t.endswith("/hj212")]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p in self.accepted if t == "park/demo/deadletter"]


GatewayFactory = Callable[..., Hj212Gateway]


@pytest.fixture
def start_gateway() -> Iterator[GatewayFactory]:
    """Starts a gateway on a free port (listen port 0) with the given publisher and settings; stops it after."""
    started: list[Hj212Gateway] = []

    def start(publisher: FakePublisher, **section: Any) -> Hj212Gateway:
        settings = GatewaySection(**{"stations": {"MN01": "ST01"}, **section})
        settings = settings.model_copy(update={"listen": "127.0.0.1:0"})  # the validator refuses port 0
        gateway = Hj212Gateway(settings, publisher, park="demo", now_ns=lambda: 1_800_000_000_000_000_000)
        gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def connect(gateway: Hj212Gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answers(sock: socket.socket, n: int) -> list[bytes]:
    """The next `n` CR LF-terminated frames the gateway sends back."""
    data = b""
    while data.count(b"\r\n") < n:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return [line + b"\r\n" for line in data.split(b"\r\n")[:-1]]


def closed_by_peer(sock: socket.socket, timeout: float = 3.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class TestFraming:
    def test_a_frame_split_at_every_byte_boundary_is_published_whole(self, start_gateway: GatewayFactory) -> None:
        """Whatever byte a frame is cut at, it is published once, complete, and answered once."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        raw = frame(1)
        with connect(gateway) as sock:
            for cut in range(1, len(raw)):
                sock.sendall(raw[:cut])
                time.sleep(0.002)
                sock.sendall(raw[cut:])
            answers = read_answers(sock, len(raw) - 1)
        assert publisher.frames() == [("park/demo/air/ST01/hj212", raw)] * (len(raw) - 1)
        assert len(answers) == len(raw) - 1
        assert publisher.dead_letters() == []

    def test_a_frame_sent_byte_by_byte_is_published_once(self, start_gateway: GatewayFactory) -> None:
        """One byte per segment: the frame comes out once, complete."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            for byte in frame(2):
                sock.sendall(bytes([byte]))
            read_answers(sock, 1)
        assert publisher.frames() == [("park/demo/air/ST01/hj212", frame(2))]

    def test_several_frames_in_one_write_are_published_in_order(self, start_gateway: GatewayFactory) -> None:
        """Fifty frames in one write: fifty publishes, in the order sent, fifty answers in that order."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        raws = [frame(i) for i in range(50)]
        with connect(gateway) as sock:
            sock.sendall(b"".join(raws))
            answers = read_answers(sock, 50)
        assert [p for _, p in publisher.frames()] == raws
        assert [qn_of(a) for a in answers] == [qn_of(r) for r in raws]

    def test_a_frame_without_crlf_is_published_with_it(self, start_gateway: GatewayFactory) -> None:
        """The published frame ends with CR LF, as the standard writes it, even if the logger left it out."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            sock.sendall(frame(3)[:-2] + frame(4))
            read_answers(sock, 2)
        assert [p for _, p in publisher.frames()] == [frame(3), frame(4)]


class TestRejections:
    def test_garbage_between_frames_is_dead_lettered_and_the_next_frame_published(
        self, start_gateway: GatewayFactory
    ) -> None:
        """Bytes outside a frame become one `missing_header` dead letter naming the peer; both frames pass."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            port = sock.getsockname()[1]
            sock.sendall(frame(1) + b"garbage!" + frame(2))
            read_answers(sock, 2)
        assert [p for _, p in publisher.frames()] == [frame(1), frame(2)]
        [letter] = publisher.dead_letters()
        assert letter["code"] == "missing_header"
        assert letter["payload"] == "garbage!"
        assert letter["topic"] == f"tcp://127.0.0.1:{port}"
        assert gateway.rejected["missing_header"] == 1

    def test_a_bad_crc_is_dead_lettered_with_the_frame_bytes(self, start_gateway: GatewayFactory) -> None:
        """A frame whose CRC does not hold is not published nor answered; its bytes go to the dead letter."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        good = frame(1)
        crc = good[-6:-2]
        bad = good[:-6] + (b"0000" if crc != b"0000" else b"0001") + b"\r\n"
        with connect(gateway) as sock:
            sock.sendall(bad + frame(2))
            answers = read_answers(sock, 1)
        assert [qn_of(a) for a in answers] == [qn_of(frame(2))]
        [letter] = publisher.dead_letters()
        assert letter["code"] == "crc_mismatch"
        assert letter["payload"] == bad[:-2].decode()

    def test_a_malformed_segment_is_dead_lettered(self, start_gateway: GatewayFactory) -> None:
        """A frame whose length and CRC hold but whose segment does not decode is dead-lettered."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            sock.sendall(hj212.build_frame("ST=22;CN=2011;CP=&&&&") + frame(1))
            read_answers(sock, 1)
        assert [d["code"] for d in publisher.dead_letters()] == ["missing_field"]
        assert len(publisher.frames()) == 1

    def test_a_client_disconnecting_mid_frame_leaves_a_truncated_dead_letter(
        self, start_gateway: GatewayFactory
    ) -> None:
        """The bytes of a frame cut by the disconnect are dead-lettered as `truncated`."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            sock.sendall(frame(1) + frame(2)[:30])
            read_answers(sock, 1)
        assert eventually(lambda: len(publisher.dead_letters()) == 1)
        [letter] = publisher.dead_letters()
        assert letter["code"] == "truncated"
        assert letter["payload"] == frame(2)[:30].decode()
        assert len(publisher.frames()) == 1

    def test_rejections_never_end_the_connection(self, start_gateway: GatewayFactory) -> None:
        """After a hundred bad stretches the connection still carries frames."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            for i in range(100):
                sock.sendall(b"##12ab\xff\x00junk" + frame(i))
            answers = read_answers(sock, 100)
        assert len(answers) == 100
        assert sum(gateway.rejected.values()) == 100


class TestStations:
    def test_a_configured_mn_publishes_to_its_station(self, start_gateway: GatewayFactory) -> None:
        """stations maps MN to the station id of the topic."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher, stations={"010000A8900016F000169DC0": "north-gate_1"})
        with connect(gateway) as sock:
            sock.sendall(frame(1, mn="010000A8900016F000169DC0"))
            read_answers(sock, 1)
        assert [t for t, _ in publisher.frames()] == ["park/demo/air/north-gate_1/hj212"]

    def test_an_unknown_mn_is_rejected_by_default(self, start_gateway: GatewayFactory) -> None:
        """unknown_mn = "reject": not published, not answered, dead-lettered as `unknown_mn`."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            sock.sendall(frame(1, mn="STRANGER") + frame(2))
            answers = read_answers(sock, 1)
        assert [qn_of(a) for a in answers] == [qn_of(frame(2))]
        assert [d["code"] for d in publisher.dead_letters()] == ["unknown_mn"]
        assert publisher.dead_letters()[0]["payload"] == frame(1, mn="STRANGER")[:-2].decode()
        assert len(publisher.frames()) == 1

    def test_use_mn_makes_a_valid_mn_the_station(self, start_gateway: GatewayFactory) -> None:
        """unknown_mn = "use_mn": an unmapped MN that is a device id is the station."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher, unknown_mn="use_mn")
        with connect(gateway) as sock:
            sock.sendall(frame(1, mn="LXHB0CS0306310") + frame(2))
            read_answers(sock, 2)
        assert [t for t, _ in publisher.frames()] == ["park/demo/air/LXHB0CS0306310/hj212",
                                                      "park/demo/air/ST01/hj212"]

    def test_use_mn_still_rejects_an_mn_that_is_no_device_id(self, start_gateway: GatewayFactory) -> None:
        """unknown_mn = "use_mn": an MN that cannot be a topic level (here a dot) is dead-lettered."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher, unknown_mn="use_mn")
        with connect(gateway) as sock:
            sock.sendall(frame(1, mn="ST.01") + frame(2))
            read_answers(sock, 1)
        assert [d["code"] for d in publisher.dead_letters()] == ["unknown_mn"]


class TestAnswers:
    def test_the_answer_waits_for_the_broker(self, start_gateway: GatewayFactory) -> None:
        """No 9014 goes out while the publish is pending; it follows once the publish resolves."""
        publisher = FakePublisher(hold=True)
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            sock.sendall(frame(7))
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(4096)
            sock.settimeout(5)
            publisher.release()
            [answer] = read_answers(sock, 1)
        decoded = hj212.decode_frame(answer)
        assert (decoded.cn, decoded.st, decoded.qn, decoded.mn) == ("9014", "91", qn_of(frame(7)), "MN01")
        assert gateway.answered == 1

    def test_a_frame_that_asks_no_answer_gets_none(self, start_gateway: GatewayFactory) -> None:
        """Flag=4 is published but not answered; the next answer is the Flag=5 frame's."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            sock.sendall(frame(1, flag=4) + frame(2, flag=5))
            answers = read_answers(sock, 1)
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(4096)
        assert [qn_of(a) for a in answers] == [qn_of(frame(2))]
        assert len(publisher.frames()) == 2
        assert (gateway.frames, gateway.answered) == (2, 1)

    def test_a_frame_the_broker_does_not_accept_is_not_answered(self, start_gateway: GatewayFactory) -> None:
        """A failed publish is counted, not answered (the logger sends it again), and the connection stays."""
        publisher = FakePublisher(error=GatewayError("no acknowledgement"))
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            sock.sendall(frame(1))
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(4096)
            assert eventually(lambda: gateway.publish_failed == 1)
            publisher.error = None
            sock.settimeout(5)
            sock.sendall(frame(2))
            assert [qn_of(a) for a in read_answers(sock, 1)] == [qn_of(frame(2))]


class TestConnections:
    def test_connections_beyond_max_connections_are_closed_at_once(self, start_gateway: GatewayFactory) -> None:
        """With max_connections = 2 a third connection is closed and counted; a freed slot serves again."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher, max_connections=2)
        first, second = connect(gateway), connect(gateway)
        assert eventually(lambda: gateway.active == 2)
        with connect(gateway) as third:
            assert closed_by_peer(third)
        assert gateway.refused == 1
        first.close()
        assert eventually(lambda: gateway.active == 1)
        with connect(gateway) as fourth:
            fourth.sendall(frame(1))
            assert len(read_answers(fourth, 1)) == 1
        second.close()

    def test_many_connections_are_served_at_once(self, start_gateway: GatewayFactory) -> None:
        """Twenty connections open together each get their own answers."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        socks = [connect(gateway) for _ in range(20)]
        for i, sock in enumerate(socks):
            sock.sendall(frame(i))
        assert [[qn_of(a) for a in read_answers(s, 1)] for s in socks] == [[qn_of(frame(i))] for i in range(20)]
        for sock in socks:
            sock.close()

    def test_a_silent_connection_is_closed_after_idle_timeout(self, start_gateway: GatewayFactory) -> None:
        """idle_timeout_s without a byte closes the connection."""
        gateway = start_gateway(FakePublisher(), idle_timeout_s=0.2)
        with connect(gateway) as sock:
            assert closed_by_peer(sock)
        assert eventually(lambda: gateway.active == 0)


class TestLifecycle:
    def test_a_taken_port_is_a_clear_error(self) -> None:
        """start() raises GatewayError naming the address when something listens there already."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            listen = f"127.0.0.1:{taken.getsockname()[1]}"
            gateway = Hj212Gateway(GatewaySection(listen=listen), FakePublisher(), park="demo")
            with pytest.raises(GatewayError, match=listen):
                gateway.start()

    def test_stop_closes_open_connections_and_the_listener(self, start_gateway: GatewayFactory) -> None:
        """After stop() connected loggers see the connection end and new ones are refused."""
        gateway = start_gateway(FakePublisher())
        port = gateway.port
        sock = connect(gateway)
        assert eventually(lambda: gateway.active == 1)
        gateway.stop()
        assert closed_by_peer(sock)
        sock.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        assert not [t for t in threading.enumerate() if t.name == "hj212-gateway"]

    def test_the_constructor_does_no_io(self) -> None:
        """Building a gateway neither listens nor starts a thread; `port` says it is not listening."""
        gateway = Hj212Gateway(GatewaySection(), FakePublisher(), park="demo")
        with pytest.raises(GatewayError):
            _ = gateway.port


def ack(*, failure: bool = False) -> ReasonCode:
    return ReasonCode(PacketTypes.PUBACK, "Not authorized" if failure else "Success")


class PahoStub:
    """Stands in for paho's publish(): numbers messages; `ack_before_return` answers inside the call."""

    def __init__(self, publisher: GatewayPublisher, *, ack_before_return: bool = False) -> None:
        self.publisher = publisher
        self.ack_before_return = ack_before_return
        self.mid = 0

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> paho.MQTTMessageInfo:
        self.mid += 1
        if self.ack_before_return:
            self.publisher._on_publish(None, None, self.mid, ack(), None)  # type: ignore[arg-type]
        return paho.MQTTMessageInfo(self.mid)


def stubbed(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[GatewayPublisher, PahoStub]:
    publisher = GatewayPublisher(MqttSettings(client_id="stub"), timeout_s=kwargs.pop("timeout_s", 2.0),
                                 max_pending=kwargs.pop("max_pending", 100))
    stub = PahoStub(publisher, **kwargs)
    monkeypatch.setattr(publisher._client, "publish", stub.publish)
    return publisher, stub


def acknowledge_soon(publisher: GatewayPublisher, mid: int, *, failure: bool = False) -> None:
    threading.Timer(0.05, publisher._on_publish, (None, None, mid, ack(failure=failure), None)).start()


class TestGatewayPublisher:
    def test_publish_resolves_on_the_acknowledgement(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """publish() returns once paho's network thread reports the PUBACK of its mid."""
        publisher, _ = stubbed(monkeypatch)
        acknowledge_soon(publisher, 1)
        asyncio.run(publisher.publish("t", b"x"))
        assert publisher.pending == 0

    def test_an_acknowledgement_that_beats_the_mid_is_not_lost(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """on_publish firing before paho's publish() has returned the mid still resolves the publish."""
        publisher, _ = stubbed(monkeypatch, ack_before_return=True)

        async def many() -> None:
            await asyncio.gather(*(publisher.publish("t", b"x") for _ in range(100)))

        asyncio.run(many())
        assert publisher.pending == 0

    def test_a_refused_message_raises(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A PUBACK with a failure reason code is a GatewayError, not an acceptance."""
        publisher, _ = stubbed(monkeypatch)
        acknowledge_soon(publisher, 1, failure=True)
        with pytest.raises(GatewayError, match="refused"):
            asyncio.run(publisher.publish("t", b"x"))

    def test_no_acknowledgement_in_time_raises(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a PUBACK within timeout_s publish() raises GatewayError; the late PUBACK is harmless."""
        publisher, _ = stubbed(monkeypatch, timeout_s=0.1)
        with pytest.raises(GatewayError, match="no acknowledgement"):
            asyncio.run(publisher.publish("t", b"x"))
        publisher._on_publish(None, None, 1, ack(), None)  # type: ignore[arg-type]
        assert publisher.pending == 0

    def test_unacknowledged_messages_are_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With max_pending = 2 and no PUBACK, a third publish waits and times out without reaching paho."""
        publisher, stub = stubbed(monkeypatch, timeout_s=0.2, max_pending=2)

        async def three() -> list[BaseException | None]:
            return await asyncio.gather(*(publisher.publish("t", b"x") for _ in range(3)), return_exceptions=True)

        results = asyncio.run(three())
        assert all(isinstance(r, GatewayError) for r in results)
        assert stub.mid == 2


class TestLengthVariant:
    @staticmethod
    def variant(raw: bytes) -> bytes:
        """The same frame with the length field also counting the CRC and CR LF (+6), as some loggers send."""
        length = int(raw[2:6])
        return raw[:2] + f"{length + 6:04d}".encode() + raw[6:]

    def test_the_variant_is_refused_by_default(self, start_gateway: GatewayFactory) -> None:
        """A frame whose length counts CRC and CR LF is dead-lettered when the gateway is strict."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher)
        with connect(gateway) as sock:
            sock.sendall(self.variant(frame(1)))
            assert eventually(lambda: len(publisher.dead_letters()) >= 1)
        assert publisher.frames() == []

    def test_the_variant_is_forwarded_in_lenient_mode(self, start_gateway: GatewayFactory) -> None:
        """With lenient_length the variant is published as received and answered."""
        publisher = FakePublisher()
        gateway = start_gateway(publisher, lenient_length=True)
        raw = self.variant(frame(1))
        with connect(gateway) as sock:
            sock.sendall(raw)
            answers = read_answers(sock, 1)
        assert publisher.frames() == [("park/demo/air/ST01/hj212", raw)]
        assert len(answers) == 1
