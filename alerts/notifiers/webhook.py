"""WebhookNotifier: the notification as a JSON document, POSTed to any HTTP endpoint.

    POST <url>
    Content-Type: application/json; charset=utf-8
    Idempotency-Key: <notification_id>          a resend carries the same key: the receiver can drop it

    {"kind": "state", "notification_id": "...", "title": "...", "text": "...",
     "alerts": [<Alert.to_json_dict()>, ...]}

Any 2xx is success; errors as in ``alerts.notifiers.jsonhttp``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import urllib3

from alerts.model import Notification
from alerts.notifiers.jsonhttp import JsonPoster, raise_for_status, redact_url

if TYPE_CHECKING:
    from alerts.notifiers.config import WebhookConfig


class WebhookNotifier:
    """Sends each notification as one JSON POST to the configured URL."""

    def __init__(self, config: WebhookConfig, *, http: urllib3.PoolManager | None = None) -> None:
        self.name = config.name
        self._url = config.url.get_secret_value()
        self._headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        self._poster = JsonPoster(f"webhook {config.name!r} ({redact_url(self._url)})", config.timeout_s, http)

    def send(self, notification: Notification) -> None:
        headers = {**self._headers, "Idempotency-Key": notification.notification_id}
        answer = self._poster.post(self._url, payload(notification), headers)
        raise_for_status(answer, self._poster.where)


def payload(notification: Notification) -> dict[str, Any]:
    """The JSON document of one notification."""
    return {
        "kind": notification.kind,
        "notification_id": notification.notification_id,
        "title": notification.title,
        "text": notification.text,
        "alerts": [a.to_json_dict() for a in notification.alerts],
    }
