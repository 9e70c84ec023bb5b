"""Fixtures for real servers: each test gets its own, on free ports, in its own temporary directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import (
    InfluxDB1Server,
    MosquittoServer,
    VictoriaMetricsServer,
    binary_available,
)


def require_binary(name: str) -> None:
    """Skip the test if `name` is not installed; fail instead on CI, where it must be."""
    if binary_available(name):
        return
    message = f"{name} is not installed (apt-get install {name})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A started mosquitto broker with persistence."""
    require_binary(MosquittoServer.binary)
    with MosquittoServer(tmp_path / "mosquitto") as server:
        yield server


@pytest.fixture
def influxdb1(tmp_path: Path) -> Iterator[InfluxDB1Server]:
    """A started InfluxDB 1.x server."""
    require_binary(InfluxDB1Server.binary)
    with InfluxDB1Server(tmp_path / "influxdb1") as server:
        yield server


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    """A started VictoriaMetrics server."""
    require_binary(VictoriaMetricsServer.binary)
    with VictoriaMetricsServer(tmp_path / "victoria") as server:
        yield server
