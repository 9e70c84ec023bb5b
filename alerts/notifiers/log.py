"""LogNotifier: one log line per notification, through the standard logging module (for a log shipper)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from alerts.model import Notification

if TYPE_CHECKING:
    from alerts.notifiers.config import LogConfig


class LogNotifier:
    """Writes `<kind> <notification_id> [<severity>] <title>: <text>` on one line; it never fails."""

    def __init__(self, config: LogConfig, *, logger: logging.Logger | None = None) -> None:
        self.name = config.name
        self._logger = logger if logger is not None else logging.getLogger(config.logger)
        self._level = logging.getLevelNamesMapping()[config.level]

    def send(self, notification: Notification) -> None:
        text = " | ".join(line for line in notification.text.splitlines() if line.strip())
        self._logger.log(
            self._level,
            "%s %s [%s] %s: %s",
            notification.kind,
            notification.notification_id,
            notification.severity,
            " ".join(notification.title.split()),
            text,
        )
