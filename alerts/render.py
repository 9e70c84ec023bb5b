"""Rendering: alert changes into notification text, in Chinese, English or both, from templates.

Templates are `str.format` strings over the alert's fields: {rule} {source} {severity} {state} {value}
{threshold} {message} {message_zh} {started_at} {updated_at} {alert_id} {acknowledged_by} {note}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from alerts.db import Row
from alerts.model import Alert, Notification

STATE_ZH = {"pending": "待定", "firing": "告警", "acknowledged": "已确认", "resolved": "已恢复"}
SEVERITY_ZH = {"info": "提示", "warning": "一般", "major": "重要", "critical": "紧急"}
KIND_PREFIX = {"state": "", "reminder": "[reminder 提醒] ", "escalation": "[escalation 升级] "}


class Templates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    language: Literal["zh", "en", "both"] = "both"
    title: str = "[{severity}] {rule} {source}: {state}"
    title_zh: str = "【{severity_zh}】{source} {rule} {state_zh}"
    line: str = "{message} (value {value}, limit {threshold}, since {started_at}, id {alert_id})"
    line_zh: str = "{message_zh}（数值 {value}，限值 {threshold}，开始于 {started_at}，编号 {alert_id}）"


DEFAULT_TEMPLATES = Templates()


class Renderer:
    def __init__(self, templates: Templates = DEFAULT_TEMPLATES) -> None:
        self._t = templates

    def notification(self, rows: Sequence[Row]) -> Notification:
        first = rows[0]
        alerts = tuple(r.alert for r in rows)
        title = KIND_PREFIX.get(first.kind, "") + self._title(alerts)
        text = "\n".join(self._line(a) for a in alerts)
        nid = first.notification_id if len(rows) == 1 else f"{first.notification_id}+{len(rows) - 1}"
        return Notification(nid, first.kind, alerts, title, text)  # type: ignore[arg-type]

    def _title(self, alerts: tuple[Alert, ...]) -> str:
        if len(alerts) > 1:
            a = alerts[0]
            en = f"[{a.severity}] {a.rule}: {len(alerts)} sources {a.state}"
            zh = f"【{SEVERITY_ZH.get(a.severity, a.severity)}】{a.rule}：{len(alerts)} 个点位{STATE_ZH.get(a.state)}"
            return self._pick(en, zh)
        fields = _fields(alerts[0])
        return self._pick(self._t.title.format_map(fields), self._t.title_zh.format_map(fields))

    def _line(self, alert: Alert) -> str:
        fields = _fields(alert)
        return self._pick(self._t.line.format_map(fields), self._t.line_zh.format_map(fields))

    def _pick(self, en: str, zh: str) -> str:
        return {"en": en, "zh": zh}.get(self._t.language, f"{zh} / {en}")


def _fields(alert: Alert) -> dict[str, object]:
    d = alert.to_json_dict()
    d["state_zh"] = STATE_ZH.get(alert.state, alert.state)
    d["severity_zh"] = SEVERITY_ZH.get(alert.severity, alert.severity)
    d["value"] = "-" if alert.value is None else f"{alert.value:.6g}"
    d["threshold"] = "-" if alert.threshold is None else f"{alert.threshold:.6g}"
    return d
