"""Routing and policy: which alert changes go to which channels, reminders, escalation, silences, groups.

    [[alerts.route]]
    rules = ["*"]                  # rule names, "*" = all
    severities = ["major", "critical"]
    channels = ["ops_webhook", "duty_dingtalk"]
    notify = ["firing", "acknowledged", "resolved"]   # which state changes are sent
    repeat_s = 3600                # reminder while firing and not acknowledged (0: never)
    escalate_after_s = 900         # not acknowledged within this: send to escalate_to as well
    escalate_to = ["manager_email"]
    group_s = 60                   # firing changes of one rule within this window make one notification

    [[alerts.silence]]             # nothing is sent for matching alerts in the window (they still exist)
    rules = ["pm25_high"]
    sources = ["ST03"]
    start = "2026-11-27T09:00:00+08:00"
    end = "2026-11-27T12:00:00+08:00"
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.model import Alert

Notify = Literal["pending", "firing", "acknowledged", "resolved"]


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[str, ...] = ("*",)
    severities: tuple[str, ...] = ("info", "warning", "major", "critical")
    channels: tuple[str, ...] = Field(min_length=1)
    notify: tuple[Notify, ...] = ("firing", "acknowledged", "resolved")
    repeat_s: float = Field(default=0.0, ge=0)
    escalate_after_s: float = Field(default=0.0, ge=0)
    escalate_to: tuple[str, ...] = ()
    group_s: float = Field(default=0.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _escalation(self) -> Route:
        if bool(self.escalate_after_s) != bool(self.escalate_to):
            raise ValueError("escalate_after_s and escalate_to go together")
        return self

    def matches(self, alert: Alert) -> bool:
        return ("*" in self.rules or alert.rule in self.rules) and alert.severity in self.severities


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[str, ...] = ("*",)
    sources: tuple[str, ...] = ("*",)
    start: datetime
    end: datetime
    comment: str = ""

    @model_validator(mode="after")
    def _window(self) -> Silence:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def covers(self, alert: Alert, now: datetime) -> bool:
        return (
            ("*" in self.rules or alert.rule in self.rules)
            and ("*" in self.sources or alert.source in self.sources)
            and self.start <= now < self.end
        )


class Router:
    """Decides, for one alert change, the routes that apply (none while silenced)."""

    def __init__(self, routes: Sequence[Route], silences: Sequence[Silence] = ()) -> None:
        self.routes = tuple(routes)
        self.silences = tuple(silences)

    def routes_for(self, alert: Alert, now: datetime) -> list[Route]:
        if any(s.covers(alert, now) for s in self.silences):
            return []
        return [r for r in self.routes if r.matches(alert)]

    def channels(self) -> set[str]:
        return {c for r in self.routes for c in (*r.channels, *r.escalate_to)}
