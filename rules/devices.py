"""Device rules: a listed station or gate that has gone silent, or says it is offline."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ingest.models import AirReading, DeviceStatus, GateEvent
from rules.common import RuleConfig, epoch, fmt, severity_field
from rules.interfaces import BaseRule, Event
from rules.signals import Signal

Kind = Literal["air", "gate"]


def device_of(event: Event) -> tuple[str, str] | None:
    """(kind, device id) of an event that comes from a device, else None."""
    if isinstance(event, AirReading):
        return ("air", event.station)
    if isinstance(event, GateEvent):
        return ("gate", event.gate)
    if isinstance(event, DeviceStatus):
        return (event.kind, event.device)
    return None


class SilentConfig(RuleConfig):
    """Devices to watch: `devices` (ids), or all configured [park] stations/gates of `kind` when empty."""

    type: Literal["silent"]
    kind: Kind = "air"
    devices: tuple[str, ...] = ()
    timeout_s: float = Field(gt=0)
    severity: str = severity_field("major")


class SilentRule(BaseRule):
    """Fires when a listed device has sent nothing for `timeout_s` (one that never reported counts from
    the first tick); resolves with its next message."""

    watches_liveness = True  # a station in maintenance still proves it is alive

    def __init__(self, config: SilentConfig, devices: Iterable[str]) -> None:
        self.config = config
        self.name = config.name
        self._devices = tuple(config.devices or devices)
        self._last: dict[str, float] = {}
        self._firing: set[str] = set()
        self._started: float | None = None

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        device = device_of(event)
        if device is None or device[0] != self.config.kind or device[1] not in self._devices:
            return ()
        self._last[device[1]] = max(self._last.get(device[1], 0.0), epoch(at))
        if device[1] in self._firing:
            self._firing.discard(device[1])
            return [self._signal("resolved", device[1], at, 0.0)]
        return ()

    def tick(self, now: datetime) -> Iterable[Signal]:
        t = epoch(now)
        if self._started is None:
            self._started = t
        out = []
        for device in self._devices:
            silent_for = t - self._last.get(device, self._started)
            if silent_for > self.config.timeout_s and device not in self._firing:
                self._firing.add(device)
                out.append(self._signal("firing", device, now, silent_for))
        return out

    def _signal(self, state: Literal["firing", "resolved"], device: str, at: datetime, silent_for: float) -> Signal:
        c = self.config
        if state == "firing":
            en, cn = f"{device} has sent nothing for {fmt(silent_for)} s", f"{device} 已 {fmt(silent_for)} 秒无数据"
        else:
            en, cn = f"{device} is sending again", f"{device} 已恢复上报"
        return Signal(self.name, device, state, at, c.severity, silent_for, c.timeout_s, en, cn, {"kind": c.kind})

    def snapshot(self) -> dict[str, Any]:
        return {"last": dict(self._last), "firing": sorted(self._firing), "started": self._started}

    def restore(self, state: dict[str, Any]) -> None:
        self._last = {k: float(v) for k, v in state.get("last", {}).items()}
        self._firing = set(state.get("firing", ()))
        self._started = state.get("started")


class OfflineConfig(RuleConfig):
    type: Literal["offline"]
    kind: Kind | None = None
    severity: str = severity_field("major")


class OfflineRule(BaseRule):
    """Fires when a device's status (or its MQTT will) says offline; resolves when it says online."""

    watches_liveness = True

    def __init__(self, config: OfflineConfig) -> None:
        self.config = config
        self.name = config.name
        self._offline: set[str] = set()

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        if not isinstance(event, DeviceStatus) or (self.config.kind and event.kind != self.config.kind):
            return ()
        if not self.config.watches(event.device):
            return ()
        source, sev = event.device, self.config.severity
        if not event.online and source not in self._offline:
            self._offline.add(source)
            return [Signal(self.name, source, "firing", at, sev, message=f"{source} is offline",
                           message_zh=f"{source} 离线")]
        if event.online and source in self._offline:
            self._offline.discard(source)
            return [Signal(self.name, source, "resolved", at, sev, message=f"{source} is online again",
                           message_zh=f"{source} 已上线")]
        return ()

    def snapshot(self) -> dict[str, Any]:
        return {"offline": sorted(self._offline)}

    def restore(self, state: dict[str, Any]) -> None:
        self._offline = set(state.get("offline", ()))
