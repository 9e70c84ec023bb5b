"""What one benchmark invocation hands its parts: a scratch directory, the InfluxDB server they share,
the sizes to use, and a cache of generated traffic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.env import InfluxDB1Server, wait_quiet


@dataclass(frozen=True)
class Sizes:
    """How big each part is; `quick()` is the smoke-test size."""

    ingest_readings: int = 200_000
    ingest_stations: int = 100
    crossings: int = 1000  # p99 of 1,000 is the 10th worst; of 200 (until 2026-12-03) the 3rd: too noisy
    load_rate: float = 5000.0
    load_stations: int = 500
    memory_stations: int = 500
    memory_seconds: int = 86_400
    memory_sample_every: int = 1_000_000
    memory_cap_mb: float = 2000.0  # stop feeding past this RSS (10 x the target): the machine is shared
    spool_rows: int = 1_000_000
    quiet_wait_s: float = 120.0  # how long to wait for other work on the machine to finish before measuring

    @classmethod
    def quick(cls) -> Sizes:
        return cls(ingest_readings=2_000, crossings=20, memory_seconds=180, memory_sample_every=10_000,
                   spool_rows=20_000,
                   quiet_wait_s=2.0)


@dataclass
class Context:
    tmp: Path
    influx: InfluxDB1Server
    sizes: Sizes
    log: Callable[[str], None] = print
    cache: dict[Any, Any] = field(default_factory=dict)

    def workdir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def wait_quiet(self) -> float:
        return wait_quiet(max_wait_s=self.sizes.quiet_wait_s, log=self.log)
