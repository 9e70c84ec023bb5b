"""A dry run of the rules: recorded or simulated traffic through the decoder and the rules on a virtual
clock (the recorded times), collecting the alerts they would raise. Nothing is published or stored.

This is `parkwatch rules test`: an engineer checks a rule change against yesterday's traffic (or a
scenario) before deploying it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from ingest.decode import Decoder, DecodeSettings
from ingest.errors import Rejected
from ingest.messages import Message
from rules.config import Park, RulesFile, compile_rules
from rules.engine import RuleEngine
from rules.signals import RecordingSink, Signal


class Recorded(Protocol):
    """A message with the time it was received (a recording's line, a simulator's output)."""

    @property
    def time(self) -> datetime: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


@dataclass
class DryRunResult:
    signals: list[Signal] = field(default_factory=list)
    messages: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    late: int = 0


def dry_run(
    records: Iterable[Recorded], decode: DecodeSettings, rules: RulesFile, park: Park, *, tick_s: float = 5.0,
    after_each: Callable[[RuleEngine], object] = lambda engine: None,
) -> DryRunResult:
    """Feed `records` (in time order) through the decoder and the rules; the clock is the records' time.
    `after_each` is called with the engine after each message the rules took (its state as the run goes,
    for a test)."""
    sink = RecordingSink()
    clock: list[datetime] = []
    engine = RuleEngine(compile_rules(rules, park), sink, tz=park.tz, lateness=rules.lateness,
                        maintenance=rules.maintenance, now=lambda: clock[-1])
    result = DryRunResult()
    seen: set[str] = set()  # the service stores a repeated (station, ts) or (gate, event_id) once; so here
    decoder = Decoder(decode, lambda: int(clock[-1].timestamp() * 1e9))
    next_tick: datetime | None = None
    for record in records:
        clock.append(record.time)
        if len(clock) > 2:
            del clock[0]
        if next_tick is None:
            engine.tick(record.time)
            next_tick = record.time + timedelta(seconds=tick_s)
        while record.time >= next_tick:
            engine.tick(next_tick)
            next_tick += timedelta(seconds=tick_s)
        result.messages += 1
        try:
            decoded = decoder.decode(Message(record.topic, record.payload, int(record.time.timestamp() * 1e9)))
        except Rejected as exc:
            result.rejected[exc.reason] = result.rejected.get(exc.reason, 0) + 1
            continue
        if decoded.key is not None:
            if decoded.key in seen:
                result.duplicates += 1
                continue
            seen.add(decoded.key)
        if decoded.value is not None:
            engine.process(decoded.value, datetime.fromtimestamp(decoded.point.ts_ns / 1e9, record.time.tzinfo))
        after_each(engine)
    if clock:
        engine.tick(clock[-1] + timedelta(seconds=tick_s))
    result.signals = sink.signals
    result.late = engine.late
    return result
