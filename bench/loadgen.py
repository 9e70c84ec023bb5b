"""Background load for part 2: JSON readings at a steady rate on stations of their own, from a process of
its own, until SIGTERM; then prints what it sent as JSON.

    python -m bench.loadgen --port P --rate 5000 --stations 500 --prefix LD
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

from bench.traffic import BoundedPublisher, endless


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
    pub = BoundedPublisher(args.port, window=1000)
    print(json.dumps({"connected": True}), flush=True)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    started = time.monotonic()
    sent = pub.publish_all(endless("json", stations=args.stations, base=base, prefix=args.prefix),
                           rate=args.rate, stop=stop)
    elapsed = time.monotonic() - started
    pub.wait_acked(60)
    pub.close()
    print(json.dumps({"sent": sent, "seconds": elapsed, "rate": sent / elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
