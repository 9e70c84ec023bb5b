"""The benchmark still runs: every part at a tiny size, against real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def test_a_benchmark_stopped_by_sigterm_leaves_no_server_behind(tmp_path: Path) -> None:
    """`kill` of a running benchmark stops its mosquitto, influxd and service with it, and removes its
    scratch directory."""
    require_binary("mosquitto")
    require_binary("influxd")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", "--quick", "--runs", "1", "--only", "ingest", "--out",
         str(tmp_path / "latest.json")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "bench: quick sizes, ...; scratch /tmp/pwbench-..."
    scratch = first.rsplit("scratch ", 1)[-1].strip()
    assert scratch.startswith("/"), first
    for line in proc.stdout:
        if line.startswith("[ingest] run 1/1"):
            break
    time.sleep(1.0)  # into the measurement: servers and the service running
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGTERM
    assert not Path(scratch).exists()
    deadline = time.monotonic() + 10
    while (left := running_in(scratch)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, left


def running_in(scratch: str) -> list[str]:
    """Command lines of the processes that name the scratch directory."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if scratch in cmdline:
            found.append(cmdline)
    return found
