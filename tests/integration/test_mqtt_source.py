"""The MQTT source on a real broker: a backlog queued for its persistent session arrives whole, in order,
once; acknowledged messages are not delivered again. Reads go through one buffer per connection
(ingest/paho_lean.py), so these tests cover packets that span reads and reads that hold many packets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ingest.messages import Message
from ingest.mqtt import MqttSettings, MqttSource
from ingest.paho_lean import BufferedSocket
from tests.integration.harness import eventually
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

FILTERS = ["park/demo/#"]
GONE = "Client pw-backlog disconnected."


def payload(i: int) -> bytes:
    """Mostly small messages, some larger than a TCP segment, one larger than a read of the buffer."""
    if i == 777:
        return b"L" * 300_000
    return (b"%06d:" % i) + b"x" * (i % 97 if i % 10 else 5_000)


def publish(broker: MosquittoServer, n: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        infos = [client.publish(f"park/demo/air/ST{i % 7:02d}/reading", payload(i), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def source_factory(mosquitto: MosquittoServer, tmp_path: Path) -> Iterator[Callable[..., MqttSource]]:
    started: list[MqttSource] = []

    def make(receive_maximum: int = 10_000, keepalive_s: int = 30) -> MqttSource:
        settings = MqttSettings(port=mosquitto.port, client_id="pw-backlog", receive_maximum=receive_maximum,
                                keepalive_s=keepalive_s)
        source = MqttSource(settings, FILTERS, held_file=tmp_path / "subscriptions.json")
        source.start()
        started.append(source)
        assert source.wait_connected(10)
        return source

    yield make
    for source in started:
        source.stop()


def stop(source: MqttSource, broker: MosquittoServer) -> None:
    """Stop the source and wait until the broker has read its DISCONNECT: a client that connects with the
    same id before that takes the session over, and the broker drops what the old connection still had
    unread, acknowledgements included."""
    before = broker.log_path.read_text().count(GONE)
    source.stop()
    assert eventually(lambda: broker.log_path.read_text().count(GONE) > before, 10)


def take_all(source: MqttSource, n: int, timeout_s: float = 30) -> list[Message]:
    got: list[Message] = []
    end = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < end:
        got += source.take(1000, 0.1)
    return got


class TestBacklog:
    def test_a_queued_backlog_arrives_whole_in_order_and_once(
        self, mosquitto: MosquittoServer, source_factory: Callable[..., MqttSource], tmp_path: Path
    ) -> None:
        first = source_factory()
        assert eventually((tmp_path / "subscriptions.json").exists, 10)  # the session is subscribed
        stop(first, mosquitto)
        n = 3_000
        publish(mosquitto, n)

        source = source_factory()
        assert isinstance(source._client.socket(), BufferedSocket)
        got = take_all(source, n)
        assert [m.payload for m in got] == [payload(i) for i in range(n)]
        assert [m.topic for m in got[:8]] == [f"park/demo/air/ST{i % 7:02d}/reading" for i in range(8)]
        assert all(m.qos == 1 for m in got)
        source.ack(got)
        stop(source, mosquitto)

        again = source_factory()
        assert again.take(10, timeout=1.0) == []  # everything was acknowledged: nothing comes back

    def test_what_was_not_acknowledged_comes_back_on_the_next_connection(
        self, mosquitto: MosquittoServer, source_factory: Callable[..., MqttSource], tmp_path: Path
    ) -> None:
        first = source_factory()
        assert eventually((tmp_path / "subscriptions.json").exists, 10)
        stop(first, mosquitto)
        publish(mosquitto, 500)

        source = source_factory()
        got = take_all(source, 500)
        source.ack(got[:200])
        stop(source, mosquitto)

        again = source_factory()
        redelivered = take_all(again, 300)
        assert [m.payload for m in redelivered] == [payload(i) for i in range(200, 500)]

    def test_no_more_than_the_receive_maximum_waits_in_memory(
        self, mosquitto: MosquittoServer, source_factory: Callable[..., MqttSource], tmp_path: Path
    ) -> None:
        """A slow taker of a large backlog: the network thread stops reading while the queue holds the
        Receive Maximum, whatever the broker sends, and everything still arrives in order."""
        first = source_factory(receive_maximum=200)
        assert eventually((tmp_path / "subscriptions.json").exists, 10)
        stop(first, mosquitto)
        n = 3_000
        publish(mosquitto, n)

        source = source_factory(receive_maximum=200)
        got: list[Message] = []
        most = 0
        end = time.monotonic() + 60
        while len(got) < n and time.monotonic() < end:
            time.sleep(0.005)
            most = max(most, source.pending())
            batch = source.take(100, 0.1)
            source.ack(batch)
            got += batch
        assert [m.payload for m in got] == [payload(i) for i in range(n)]
        assert most <= 200 + 1  # one packet more: the one paho's own loop reads before the queue is checked
        stop(source, mosquitto)

    def test_a_full_queue_keeps_the_connection_alive(
        self, mosquitto: MosquittoServer, source_factory: Callable[..., MqttSource], tmp_path: Path
    ) -> None:
        """While nothing is taken for several keepalive periods, the source still reads now and then to find
        the broker's answer to its pings: it stays connected, and then everything arrives in order."""
        first = source_factory(receive_maximum=100, keepalive_s=2)
        assert eventually((tmp_path / "subscriptions.json").exists, 10)
        stop(first, mosquitto)
        n = 3_000
        publish(mosquitto, n)

        source = source_factory(receive_maximum=100, keepalive_s=2)
        time.sleep(7)  # more than three keepalive periods with a full queue
        assert source.connected and source.reconnects == 0
        got: list[Message] = []
        end = time.monotonic() + 60
        while len(got) < n and time.monotonic() < end:
            batch = source.take(500, 0.1)
            source.ack(batch)
            got += batch
        assert [m.payload for m in got] == [payload(i) for i in range(n)]
        assert source.reconnects == 0
        stop(source, mosquitto)
