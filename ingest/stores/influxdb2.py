"""InfluxDB2Store: the InfluxDB v2 write API (InfluxDB 2.x/3.x, VictoriaMetrics) through influxdb-client.

Writes are SYNCHRONOUS: the client's batching mode returns before the server answers and hands errors
only to a callback, so a refused batch would be lost without a trace (servers.md). Errors of
influxdb-client and urllib3 are translated here and nowhere else:

    2xx                          the batch is stored
    400, 413, 422, other 4xx     StoreError(retryable=False): the content is refused
    401, 403, 404, 408, 429, 5xx StoreError(retryable=True): not about the content (token, bucket, load)
    400 "HTTP request to an      StoreError(retryable=True): influxdb:// to an HTTPS server, a configuration
        HTTPS server"            error the data must survive
    timeout, connection error,   StoreError(retryable=True)
    TLS failure (status 0)
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any, cast

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.rest import ApiException

from ingest.errors import StoreError
from ingest.points import Point, spooled_lines

_NOT_ABOUT_CONTENT = frozenset({401, 403, 404, 408, 429})
_MAX_ERROR_TEXT = 500
_PLAIN_TO_HTTPS = "HTTP request to an HTTPS server"  # Go's answer to plain HTTP on a TLS port
_NS = cast(WritePrecision, WritePrecision.NS)  # the library's "enum" members are plain str


class InfluxDB2Store:
    """Writes batches to one bucket through the v2 write API; the client is built on the first write."""

    def __init__(self, url: str, org: str, bucket: str, token: str | None = None, timeout_s: float = 10.0,
                 *, tls: ssl.SSLContext | None = None) -> None:
        self.url = url
        self._tls = tls  # checks the server's certificate (ingest.security); none: the client's default
        self.org = org
        self.bucket = bucket
        self._token = token
        self._timeout_ms = max(1, round(timeout_s * 1000))
        self._client: InfluxDBClient | None = None
        self._write_api: WriteApi | None = None

    def write(self, points: Sequence[Point]) -> None:
        """Write the batch (ns precision) and wait for the server's answer; StoreError if it refuses."""
        if points:  # in the spool's form, as the drainer prepares nearly every batch (one encoder)
            self.write_prepared(self.prepare([p.to_bytes() for p in points]))

    def prepare(self, spooled: Sequence[bytes]) -> bytes:
        """The body of a write of points given in the spool's form (PreparingStore); StoreError for a point
        it cannot carry."""
        try:
            # VictoriaMetrics splits the body at every newline, even inside quotes, and skips the broken
            # lines while answering 204: a newline in a string field goes as the two characters \n.
            return "\n".join(spooled_lines(spooled, escape_newlines=True)).encode()
        except ValueError as exc:
            raise StoreError(f"InfluxDB {self.url}: {exc}", retryable=False) from exc

    def write_prepared(self, body: bytes) -> None:
        """Send a body from `prepare` and wait for the server's answer."""
        try:
            self._api().write(bucket=self.bucket, org=self.org, record=body, write_precision=_NS)
        except ApiException as exc:
            raise _api_error(exc, self.url) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreError(f"InfluxDB {self.url} unreachable: {exc}", retryable=True) from exc

    def close(self) -> None:
        """Close the client; a later write builds a new one."""
        client, self._client, self._write_api = self._client, None, None
        if client is not None:
            client.close()

    def _api(self) -> WriteApi:
        if self._write_api is None:
            self._client = InfluxDBClient(url=self.url, token=self._token or "", org=self.org, timeout=self._timeout_ms,
                                          ssl_context=self._tls)
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        return self._write_api


def _api_error(exc: ApiException, url: str) -> StoreError:
    status: int | None = exc.status or None  # 0: no answer at all (influxdb-client's own TLS failure)
    if status is None:
        reason = " ".join(str(exc.reason or "no response").split())
        return StoreError(f"InfluxDB {url} unreachable: {reason[:_MAX_ERROR_TEXT]}", retryable=True)
    message = _message(exc)
    retryable = status >= 500 or status in _NOT_ABOUT_CONTENT or _PLAIN_TO_HTTPS in message
    return StoreError(f"InfluxDB {url}: {status} {message}", retryable=retryable, status=status)


def _message(exc: ApiException) -> str:
    message: Any = getattr(exc, "message", None) or exc.reason or ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    text = str(message).strip()
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."
