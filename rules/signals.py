"""Signal: what a rule says about one source at one moment; the rules' only output.

A signal is a state change of the condition (rule, source): `pending` (crossed, waiting for its `for`),
`firing` (with a severity, which may rise or fall while it fires), `resolved`, or `notice` (a one-off
statement, e.g. a station entering maintenance). The alerts layer turns signals into alerts with ids,
acknowledgement and notifications.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

State = Literal["pending", "firing", "resolved", "notice"]


@dataclass(frozen=True, slots=True)
class Signal:
    rule: str
    source: str
    state: State
    at: datetime
    severity: str = "warning"
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    message_zh: str = ""
    details: Mapping[str, str | float | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("a signal's time must be timezone-aware")

    @property
    def key(self) -> tuple[str, str]:
        """The condition this signal is about: one alert at a time per (rule, source)."""
        return (self.rule, self.source)


class SignalSink(Protocol):
    """Receives the signals of the rules (the alerts layer, or a recorder in tests and `rules test`)."""

    def emit(self, signals: Sequence[Signal]) -> None: ...


class RecordingSink:
    """Keeps every signal, in order: for tests and `parkwatch rules test`."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []

    def emit(self, signals: Sequence[Signal]) -> None:
        self.signals.extend(signals)

    def states(self, rule: str | None = None) -> list[tuple[str, str, State, str]]:
        return [(s.rule, s.source, s.state, s.severity) for s in self.signals if rule is None or s.rule == rule]
