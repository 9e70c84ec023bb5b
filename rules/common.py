"""Pieces every rule config shares: names, station selection, severities, messages."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ingest.models import AirReading

RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
SEVERITIES = ("info", "warning", "major", "critical")


class RuleConfig(BaseModel):
    """Fields every rule has: a unique name and the stations it watches ("*" = all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    stations: tuple[str, ...] = ("*",)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RULE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a rule name (lower-case letters, digits, '_'; up to 64)")
        return value

    def watches(self, station: str) -> bool:
        return "*" in self.stations or station in self.stations


Severity = str  # validated by `severity_field`


def severity_field(default: str = "warning") -> str:
    return Field(default=default, pattern="^(" + "|".join(SEVERITIES) + ")$")


def live(event: object) -> AirReading | None:
    """The event as a real-time reading (JSON, or HJ 212 CN 2011), else None.

    Minute, hourly and daily HJ 212 data (CN 2051/2061/2031) are stored, but judged by no value rule and
    averaged by nobody: they are aggregates, stamped with the start of their period, and mixing them with
    real-time values would count them twice and make a flat line out of an hourly mean.
    """
    return event if isinstance(event, AirReading) and not event.period else None


def epoch(at: datetime) -> float:
    return at.timestamp()


def fmt(value: float) -> str:
    return f"{value:.6g}"
