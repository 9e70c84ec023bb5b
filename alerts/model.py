"""Alert and Notification: the frozen values of the alerts layer (contract §6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

AlertState = Literal["pending", "firing", "acknowledged", "resolved"]
SEVERITY_RANK = {"info": 0, "warning": 1, "major": 2, "critical": 3}


@dataclass(frozen=True, slots=True)
class Alert:
    """One occurrence of a rule on a source. `alert_id` is stable from pending (or firing) to resolved."""

    alert_id: str
    rule: str
    source: str
    severity: str
    state: AlertState
    started_at: datetime
    updated_at: datetime
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    message_zh: str = ""
    acknowledged_by: str | None = None
    note: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> Alert:
        return replace(self, **changes)

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    def to_json_dict(self) -> dict[str, Any]:
        """The payload published on park/{park}/alerts/... and sent to webhooks (contract §6)."""
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "source": self.source,
            "severity": self.severity,
            "state": self.state,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "message_zh": self.message_zh,
            "acknowledged_by": self.acknowledged_by,
            "note": self.note,
            "details": dict(self.details),
        }

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> Alert:
        return cls(
            alert_id=d["alert_id"], rule=d["rule"], source=d["source"], severity=d["severity"], state=d["state"],
            started_at=datetime.fromisoformat(d["started_at"]), updated_at=datetime.fromisoformat(d["updated_at"]),
            value=d.get("value"), threshold=d.get("threshold"), message=d.get("message", ""),
            message_zh=d.get("message_zh", ""), acknowledged_by=d.get("acknowledged_by"), note=d.get("note"),
            details=d.get("details") or {},
        )


NotificationKind = Literal["state", "reminder", "escalation"]


@dataclass(frozen=True, slots=True)
class Notification:
    """What a channel sends: one alert, or a group of alerts of one burst, already rendered as text.

    `notification_id` is unique per (channel, alert change): the outbox sends each id exactly once.
    """

    notification_id: str
    kind: NotificationKind
    alerts: tuple[Alert, ...]
    title: str
    text: str

    @property
    def severity(self) -> str:
        return max((a.severity for a in self.alerts), key=lambda s: SEVERITY_RANK.get(s, 0), default="info")
