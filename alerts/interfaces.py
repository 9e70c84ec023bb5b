"""The notifier extension point, documented once.

A notifier sends one rendered notification to one channel (a webhook, a robot, a mailbox). It does no
retrying and no queueing of its own: the outbox owns delivery. It raises ``NotifyError`` with
``retryable=True`` for a transient failure (timeout, connection refused, 5xx, a robot's rate limit) and
``retryable=False`` for a permanent one (4xx, a bad token, a message the robot refuses).
"""

from __future__ import annotations

from typing import Protocol

from alerts.model import Notification
from ingest.errors import ParkWatchError


class NotifyError(ParkWatchError):
    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Notifier(Protocol):
    """One configured channel; `name` is its name in the configuration."""

    name: str

    def send(self, notification: Notification) -> None: ...
