"""The benchmark still runs: every part at a tiny size, against real servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_binary

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_runs_every_part_and_prints_the_table(tmp_path: Path) -> None:
    """`python -m bench.run --quick --runs 1` exits 0, prints the table of figures and writes the JSON."""
    require_binary("mosquitto")
    require_binary("influxd")
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--runs", "1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    header = [line for line in proc.stdout.splitlines() if line.startswith("| figure")]
    assert header and "median" in header[0], proc.stdout[-2000:]  # columns are padded to their widest value
    for figure in ("ingest JSON / reference", "ingest HJ 212 / reference", "alert latency p99", "memory: peak RSS",
                   "spool drain to InfluxDB"):
        assert figure in proc.stdout, figure
    results = json.loads(out.read_text())
    assert {f["name"] for f in results["figures"]} >= {"alert latency p99", "spool drain to InfluxDB"}
    assert not results["errors"]
