"""InfluxDB1Store: the InfluxDB 1.x HTTP API (``POST /write`` with line protocol), through urllib3.

Answers and errors, translated here and nowhere else:

    204                          the batch is stored
    400, 413, other 4xx          StoreError(retryable=False): the content is refused; InfluxDB stores the
                                 good lines of a 400 batch, which is harmless because writes are idempotent
    401, 403, 408, 429, 5xx      StoreError(retryable=True): not about the content (credentials, load);
                                 the batch is kept and tried again, not dead-lettered
    404 "database not found"     StoreError(retryable=True); the next write creates the database again
    400 "HTTP request to an      StoreError(retryable=True): influxdb1:// to an HTTPS server, a configuration
        HTTPS server"            error the data must survive
    timeout, connection error    StoreError(retryable=True)
"""

from __future__ import annotations

import json
import logging
import ssl as _ssl
from collections.abc import Sequence
from urllib.parse import urlencode

import urllib3

from ingest.errors import StoreError
from ingest.points import Point, spooled_lines

log = logging.getLogger(__name__)

_NOT_ABOUT_CONTENT = frozenset({401, 403, 404, 408, 429})
_MAX_ERROR_TEXT = 500
_PLAIN_TO_HTTPS = "HTTP request to an HTTPS server"  # Go's answer to plain HTTP on a TLS port


class InfluxDB1Store:
    """Writes batches to one database of an InfluxDB 1.x server, creating it on the first write."""

    def __init__(  # noqa: PLR0917 (the parts of an influxdb1:// URL, in its order)
        self,
        host: str,
        port: int,
        database: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        ssl: bool = False,
        *,
        tls: _ssl.SSLContext | None = None,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        host_part = f"[{host}]" if ":" in host else host
        self.base_url = f"{'https' if ssl else 'http'}://{host_part}:{port}"
        self.database = database
        self._timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        # `tls`: the context that checks the server's certificate (ingest.security); none: urllib3's default
        self._http = http if http is not None else urllib3.PoolManager(maxsize=2, retries=False, ssl_context=tls)
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username is not None:
            self._headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self._database_ready = False

    def write(self, points: Sequence[Point]) -> None:
        """POST the batch as line protocol (ns precision); StoreError if the server does not take it."""
        if points:  # in the spool's form, as the drainer prepares nearly every batch (one encoder)
            self.write_prepared(self.prepare([p.to_bytes() for p in points]))

    def prepare(self, spooled: Sequence[bytes]) -> bytes:
        """The body of a write of points given in the spool's form (PreparingStore); StoreError for a point
        it cannot carry."""
        try:
            return "\n".join(spooled_lines(spooled)).encode()
        except ValueError as exc:
            raise StoreError(f"InfluxDB {self.base_url}: {exc}", retryable=False) from exc

    def write_prepared(self, body: bytes) -> None:
        """POST a body from `prepare`."""
        if not self._database_ready:
            self._create_database()
        status, text = self._post("/write", {"db": self.database, "precision": "ns"}, body)
        if status == 404 and "database not found" in text:
            self._database_ready = False
        _check(status, text, f"write to {self.database!r}")

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.clear()

    def _create_database(self) -> None:
        """CREATE DATABASE (idempotent); a refusal is left to the write, which says what is wrong."""
        query = f'CREATE DATABASE "{_quote(self.database)}"'
        status, text = self._post("/query", {}, urlencode({"q": query}).encode(), form=True)
        if status >= 500:
            _check(status, text, "CREATE DATABASE")
        if status >= 300:
            log.warning("InfluxDB %s refused %s (%s): %s", self.base_url, query, status, _error_text(text))
        self._database_ready = True

    def _post(self, path: str, params: dict[str, str], body: bytes, *, form: bool = False) -> tuple[int, str]:
        url = f"{self.base_url}{path}?{urlencode(params)}" if params else f"{self.base_url}{path}"
        headers = self._headers
        if form:
            headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        try:
            resp = self._http.request("POST", url, body=body, headers=headers, timeout=self._timeout, retries=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreError(f"InfluxDB {self.base_url} unreachable: {exc}", retryable=True) from exc
        return resp.status, resp.data.decode("utf-8", "replace")


def _check(status: int, text: str, what: str) -> None:
    """Raise the StoreError that a non-2xx answer means."""
    if 200 <= status < 300:
        return
    retryable = status >= 500 or status in _NOT_ABOUT_CONTENT or _PLAIN_TO_HTTPS in text
    raise StoreError(f"InfluxDB {what}: {status} {_error_text(text)}", retryable=retryable, status=status)


def _error_text(text: str) -> str:
    """The server's error message ({"error": "..."} on InfluxDB 1.x), cut short."""
    try:
        message = str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        message = text.strip()
    return message if len(message) <= _MAX_ERROR_TEXT else message[:_MAX_ERROR_TEXT] + "..."


def _quote(name: str) -> str:
    """The inside of a double-quoted InfluxQL identifier."""
    return name.replace("\\", "\\\\").replace('"', '\\"')
