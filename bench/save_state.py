"""How long saving the rule state holds the rules thread, on a realistic state: the benchmark's rules
(bench.env.rules_toml, with the air-quality tracker) after 9 hours of 500 stations at one reading a
minute, which is as large as that state gets (8 hourly means, the open hour and the day's sums per station
and pollutant). Run from the repository root:

    python -m bench.save_state [--saves 10]

Prints, as median (min - max) over the saves, the time the rules thread is held (`RulesRunner._save_state`)
and, separately, the time until the file is on disk. Every alert raised while the rules thread is held
waits, and the ingest side waits behind it once the rules' one-batch queue is full.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.env import rules_toml
from ingest import interpreter
from ingest.models import AirReading
from rules.config import Park
from rules.runner import RulesRunner
from rules.state_file import encode

STATIONS = 500
HOURS = 9
VALUES = {"pm25": 35.0, "pm10": 60.0, "so2": 8.0, "no2": 30.0, "co": 0.6, "o3": 80.0}


def loaded_runner(workdir: Path, stations: Sequence[str] = tuple(f"ST{n:04d}" for n in range(STATIONS)),
                  end: datetime = datetime(2026, 12, 3, 9, 0, 30, tzinfo=UTC)) -> RulesRunner:
    """A rules runner (not started) whose engine has taken the 9 hours up to `end` of `stations`, one
    reading a minute each."""
    rules = workdir / "rules.toml"
    rules.write_text(rules_toml())
    runner = RulesRunner(rules, Park(ZoneInfo("Asia/Shanghai"), derived=lambda points: None),
                         lambda signals: None, state_path=workdir / "rules_state.json")
    for minute in range(HOURS * 60, 0, -1):
        at = end - timedelta(minutes=minute)
        for station in stations:
            reading = AirReading.model_construct(ts=at, values=dict(VALUES), flags={}, seq=None,
                                                 station=station, period="", mn="")
            runner.engine.process(reading, at)
    return runner


def running_state(stations: Sequence[str], end: datetime) -> str:
    """The rule state file (its text) of a service that has judged the 9 hours up to `end` of `stations`:
    what the alerts part starts its service with, as a service that has been running restarts with."""
    with tempfile.TemporaryDirectory(prefix="pw-state-") as tmp:
        return encode(loaded_runner(Path(tmp), stations, end)._snapshot())


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ms ({min(values):.1f} - {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pw-save-") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        runner = loaded_runner(workdir)
        interpreter.settle()  # the collector and switch interval as the service has them
        print(f"state of {STATIONS} stations after {HOURS} h built in {time.perf_counter() - t0:.1f} s")
        held: list[float] = []
        on_disk: list[float] = []
        state_file = getattr(runner, "_state", None)
        flush = getattr(state_file, "flush", None)  # absent before the state file had its writer thread
        for _ in range(args.saves):
            t0 = time.perf_counter()
            runner._save_state()
            held.append(1000 * (time.perf_counter() - t0))
            if flush is not None:
                flush()
            on_disk.append(1000 * (time.perf_counter() - t0))
            time.sleep(0.2)
        size = (workdir / "rules_state.json").stat().st_size
        print(f"state file: {size / 1e6:.2f} MB")
        print(f"rules thread held per save: {_ms(held)}")
        print(f"until the file is on disk:  {_ms(on_disk)}")
        close = getattr(state_file, "close", None)
        if close is not None:
            close()


if __name__ == "__main__":
    main()
