"""Background load for part 2: JSON readings at a steady rate on stations of their own, stamped with the
time they are published (as live devices send them), from a process of its own, until SIGTERM; then
prints what it sent as JSON. It publishes through bench.rawpub (not paho), so that generating the load
takes as little as possible of the CPU the service under test needs; payloads are the same JSON as
`bench.traffic.live` makes.

    python -m bench.loadgen --port P --rate 5000 --stations 500 --prefix LD
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from bench.rawpub import RawPublisher, topic_field
from bench.traffic import PARK, live_payload, station_id


def maker(stations: int, prefix: str) -> Callable[[int], Iterator[tuple[bytes, bytes]]]:
    """`make(k)`: the next k readings, stations in turn, all stamped with the current millisecond (a burst
    never holds one station twice, so no two readings of a station share a timestamp)."""
    topics = [topic_field(f"park/{PARK}/air/{station_id(n, prefix)}/reading") for n in range(stations)]
    counter = itertools.count()

    def make(k: int) -> Iterator[tuple[bytes, bytes]]:
        payload = live_payload()
        for _ in range(min(k, stations)):
            i = next(counter)
            yield topics[i % stations], payload(i)

    return make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--prefix", default="LD")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pub = RawPublisher(args.port, client_id=f"bench-load-{args.prefix}", window=1000)
    print(json.dumps({"connected": True}), flush=True)
    started = time.monotonic()
    sent = pub.run(maker(args.stations, args.prefix), args.rate, stop, max_burst=args.stations)
    elapsed = time.monotonic() - started
    pub.wait_acked(60)
    pub.close()
    print(json.dumps({"sent": sent, "seconds": elapsed, "rate": sent / elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
