"""Run the benchmark: ``python -m bench.run [--quick] [--only NAME[,NAME]] [--runs N]`` from the repository root.

Parts (in this order): recovery, ingest, alerts, memory. Each runs `--runs` times (default 3) against a real
mosquitto (a fresh one per measurement) and one InfluxDB 1.x started for the whole invocation, all on
127.0.0.1 in a temporary directory. Prints each measurement as it goes and a table at the end (median,
min and max over the runs, target, met or not); writes everything to bench/results/latest.json.
Exit status: 0 when every part ran (whether or not its targets were met), 1 when a part failed, 2 when
a server binary is missing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import alert_latency, ingest, memory, recovery
from bench.context import Context, Sizes
from bench.env import REPO, InfluxDB1Server, MosquittoServer
from bench.report import figures, other_work, table, write_json

PARTS: dict[str, ModuleType] = {"recovery": recovery, "ingest": ingest, "alerts": alert_latency, "memory": memory}
RESULTS = REPO / "bench" / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--only", default="", help=f"comma-separated parts to run: {', '.join(PARTS)}")
    parser.add_argument("--runs", type=int, default=3, help="runs per part (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, spools)")
    parser.add_argument("--load-rate", type=float, default=None,
                        help="background readings/s of the alerts part (default 5,000: the target's load)")
    parser.add_argument("--crossings", type=int, default=None,
                        help="crossings per run of the alerts part (default 1,000)")
    parser.add_argument("--memory-seconds", type=int, default=None,
                        help="simulated seconds of the memory part (default: a day, 86,400: over an hour per run)")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()] or list(PARTS)
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def machine() -> dict[str, Any]:
    def output(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10, cwd=REPO).stdout.strip()
        except OSError:
            return ""

    debian = Path("/etc/debian_version")
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count() or 0,
        "debian": debian.read_text().strip() if debian.exists() else "",
        "influxd": output(["influxd", "version"]),
        "mosquitto": output(["dpkg-query", "-W", "-f=${Version}", "mosquitto"]),
        "commit": output(["git", "rev-parse", "--short", "HEAD"]),
        "uncommitted": output(["git", "status", "--porcelain", "--untracked-files=no"]).splitlines(),
    }


def run_part(name: str, ctx: Context, runs: int, log: Callable[[str], None]) -> tuple[list[dict[str, Any]], str]:
    """Every run of one part; stops at the first failure (returns what ran and the error)."""
    results: list[dict[str, Any]] = []
    for run_no in range(1, runs + 1):
        log(f"[{name}] run {run_no}/{runs} ({datetime.now(UTC):%H:%M:%S} UTC)")
        started = time.monotonic()
        try:
            result = PARTS[name].run_once(ctx, run_no)
        except Exception as exc:
            log(traceback.format_exc())
            return results, f"{type(exc).__name__}: {exc}"
        result["run_seconds"] = round(time.monotonic() - started, 1)
        results.append(result)
        shutil.rmtree(ctx.tmp / f"{name}-{run_no}", ignore_errors=True)
        for sub in ctx.tmp.glob(f"{name}-*-{run_no}"):
            shutil.rmtree(sub, ignore_errors=True)
    return results, ""


def _stop(signum: int, frame: object) -> None:
    """SIGTERM (`kill`, `timeout`) stops the benchmark as Ctrl-C does: through every `finally` and `with`,
    so that its servers and services stop with it (they were left running, 2026-12-04)."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    missing = [b for b in (MosquittoServer.binary, InfluxDB1Server.binary) if not shutil.which(b)
               and not shutil.which(b, path="/usr/sbin:/usr/bin")]
    if missing:
        print(f"bench: {', '.join(missing)} not installed (apt-get install mosquitto influxdb)", file=sys.stderr)
        return 2
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.memory_seconds is not None:
        sizes = replace(sizes, memory_seconds=args.memory_seconds)
    if args.load_rate is not None:
        sizes = replace(sizes, load_rate=args.load_rate)
    if args.crossings is not None:
        sizes = replace(sizes, crossings=args.crossings)
    log = lambda text: print(text, flush=True)  # noqa: E731
    started = datetime.now(UTC)
    at_start = machine()
    tmp = Path(tempfile.mkdtemp(prefix="pwbench-"))
    log(f"bench: {'quick' if args.quick else 'full'} sizes, {args.runs} run(s) of {', '.join(args.parts)}; "
        f"scratch {tmp}")
    parts: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}

    def save(complete: bool) -> None:
        """The results so far (after each part, so a long run that is stopped still leaves its figures)."""
        write_json(args.out, {
            "complete": complete, "started_at": started.isoformat(), "finished_at": datetime.now(UTC).isoformat(),
            "quick": args.quick, "runs": args.runs, "parts_run": args.parts, "sizes": sizes.__dict__,
            "machine": at_start, "code_at_end": {k: v for k, v in machine().items() if k in ("commit", "uncommitted")},
            "figures": [f.as_dict() for f in figures(parts)], "errors": errors, "parts": parts,
        })

    try:
        with InfluxDB1Server(tmp / "influxdb") as influx:
            ctx = Context(tmp, influx, sizes, log)
            for name in args.parts:
                parts[name], error = run_part(name, ctx, args.runs, log)
                if error:
                    errors[name] = error
                if name != args.parts[-1]:
                    log(table(figures({name: parts[name]}), args.runs))
                    save(complete=False)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    log("")
    log(table(figures(parts), args.runs))
    if note := other_work(parts):
        log(note)
    for name, error in errors.items():
        log(f"FAILED {name}: {error}")
    save(complete=True)
    log(f"results: {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
