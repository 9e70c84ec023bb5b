"""The exception tree of ParkWatch.

    ParkWatchError
    +-- ConfigError            bad configuration; names the key and the bad value (service refuses to start)
    +-- Rejected               one message that cannot be accepted; carries a machine-readable reason
    |   +-- Hj212Error         an HJ 212 frame that cannot be decoded
    +-- StoreError             a store could not take a batch; `retryable` says whether to try again
    +-- SpoolError             the local on-disk spool failed (disk full, corrupt): the service stops

Foreign exceptions (urllib3, influxdb_client, sqlite3, paho) are translated into these at the one place
where that library is called, with ``raise ... from exc``.
"""

from __future__ import annotations


class ParkWatchError(Exception):
    """Root of every error ParkWatch raises on purpose."""


class ConfigError(ParkWatchError):
    """The configuration is invalid. `key` is the dotted key path, `reason` says what is wrong."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class Rejected(ParkWatchError):
    """A message that is refused. `reason` is a short stable code, `detail` says what exactly."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def text(self) -> str:
        """The reason as it goes into the dead-letter output."""
        return str(self)


class Hj212Error(Rejected):
    """An HJ 212 frame that is refused (bad length, CRC, segment, ...)."""


class StoreError(ParkWatchError):
    """A store refused or could not take a batch.

    `retryable` is True for transient failures (connection refused, timeout, 5xx) and False for
    permanent ones (4xx: a bad point, a type conflict). `status` is the server's status if there was one.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class SpoolError(ParkWatchError):
    """The local spool cannot keep data; nothing more can be acknowledged."""
