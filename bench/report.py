"""The figures of a benchmark run: median, min and max over the runs, the target, whether it is met; the
table printed at the end and the JSON written to bench/results/."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FLAT_MB = 10.0  # memory counts as flat when it grows less than this after the first 10 % of the readings


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    values: list[float]
    target: str = ""
    ok: Callable[[float], bool] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool | None:
        return None if self.ok is None else self.ok(self.median)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("ok")
        return {**d, "median": self.median, "min": min(self.values), "max": max(self.values), "met": self.met}


def figures(parts: dict[str, list[dict[str, Any]]]) -> list[Figure]:
    """The figures of the parts that ran (each a list of per-run results)."""
    out: list[Figure] = []
    ingest = parts.get("ingest") or []
    if ingest:
        out += [
            Figure("ingest, JSON readings", "readings/s", [r["json"]["rate"] for r in ingest]),
            Figure("ingest, HJ 212 frames", "readings/s", [r["hj212"]["rate"] for r in ingest]),
            Figure("reference: counting subscriber", "msg/s", [r["reference"]["rate"] for r in ingest]),
            Figure("ingest JSON / reference", "%", [100 * r["ratio_json"] for r in ingest], ">= 75 %",
                   lambda v: v >= 75),
            Figure("ingest HJ 212 / reference", "%", [100 * r["ratio_hj212"] for r in ingest], ">= 75 %",
                   lambda v: v >= 75),
        ]
        if all("budget_json" in r for r in ingest):
            out += [
                Figure("CPU per JSON reading (all processes)", "us", [r["budget_json"]["total_us"] for r in ingest]),
                Figure("cores 75 % of the reference needs", "cores", [r["budget_json"]["cores_at_target"]
                                                                       for r in ingest]),
            ]
    alerts = parts.get("alerts") or []
    if alerts:
        out += [
            Figure("alert latency p50", "ms", [r["p50_ms"] for r in alerts]),
            Figure("alert latency p99", "ms", [r["p99_ms"] for r in alerts], "<= 50 ms", lambda v: v <= 50),
        ]
    memory = parts.get("memory") or []
    if memory:
        out += [
            Figure("memory: peak RSS", "MB", [r["peak_rss_mb"] for r in memory], "<= 200 MB", lambda v: v <= 200),
            Figure("memory: growth after the first 10 %", "MB", [r["growth_mb"] for r in memory],
                   f"flat (< {FLAT_MB:.0f} MB)", lambda v: v < FLAT_MB),
            Figure("memory: simulated time fed", "h", [r["sim_hours"] for r in memory], "24 h (a day)",
                   lambda v: v >= 24),
        ]
    recovery = parts.get("recovery") or []
    if recovery:
        out.append(Figure("spool drain to InfluxDB", "readings/s", [r["rate"] for r in recovery],
                          ">= 50,000/s", lambda v: v >= 50_000))
    return out


def _fmt(value: float, unit: str) -> str:
    if unit == "cores":
        return f"{value:,.2f}"
    if unit in ("%", "ms", "MB", "h"):
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def table(figs: list[Figure], runs: int) -> str:
    header = ["figure", "unit", "median", "min", "max", "target", "met"]
    rows = [header]
    for f in figs:
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        rows.append([f.name, f.unit, _fmt(f.median, f.unit), _fmt(min(f.values), f.unit),
                     _fmt(max(f.values), f.unit), f.target or "-", met])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {2, 3, 4}

    def line(r: list[str]) -> str:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    title = f"ParkWatch benchmark: median, min and max of {runs} run{'s' if runs != 1 else ''}"
    return "\n".join([title, line(rows[0]), sep, *(line(r) for r in rows[1:])])


def other_work(parts: dict[str, list[dict[str, Any]]]) -> str:
    """One line: how much CPU other work on the machine used during each part's measurements."""
    seen = []
    for name, runs in parts.items():
        values = [v for r in runs for v in _others(r)]
        if values:
            seen.append(f"{name} {statistics.median(values):.0f} % (max {max(values):.0f} %)")
    if not seen:
        return ""
    return ("other work on the machine while measuring (CPU, % of one of the 2 cores; median, max): "
            + ", ".join(seen))


def _others(run: dict[str, Any]) -> list[float]:
    found = [run["others_cpu_pct"]] if isinstance(run.get("others_cpu_pct"), int | float) else []
    for value in run.values():
        if isinstance(value, dict) and isinstance(value.get("others_cpu_pct"), int | float):
            found.append(value["others_cpu_pct"])
    return found


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write atomically: a .tmp file beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
