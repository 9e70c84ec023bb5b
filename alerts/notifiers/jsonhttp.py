"""JSON over HTTP for the webhook and robot channels, through urllib3: the one place its errors are translated.

    timeout (connect or read)              NotifyError(retryable=True)
    connection refused or reset, DNS       NotifyError(retryable=True)
    408, 429, 5xx                          NotifyError(retryable=True, status=...)    (raise_for_status)
    any other answer that is not 2xx       NotifyError(retryable=False, status=...)   (raise_for_status)

A robot answers 200 with an error code of its own in the body; each robot's module reads it (with
``check_robot_reply``) and names which of its codes mean "too fast, try later". Messages name a channel by
``redact_url``: scheme, host and port only, because robot URLs carry their token in the query or the path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3

from alerts.interfaces import NotifyError

_MAX_ERROR_TEXT = 300
_RETRYABLE_STATUS = frozenset({408, 429})


def redact_url(url: str) -> str:
    """`scheme://host[:port]` of `url`: no user, path or query, where robots keep their tokens."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def cut(text: str, limit: int = _MAX_ERROR_TEXT) -> str:
    """`text` on one line, cut short for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What the server answered: its status and raw body."""

    status: int
    data: bytes

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None if it is not one."""
        try:
            value = json.loads(self.data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    @property
    def text(self) -> str:
        return cut(self.data.decode("utf-8", "replace"))


class JsonPoster:
    """POSTs JSON documents with one pool and one timeout; no retries, no redirects (the outbox retries)."""

    def __init__(self, where: str, timeout_s: float, http: urllib3.PoolManager | None = None) -> None:
        self.where = where
        self._timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self._http = http if http is not None else urllib3.PoolManager(maxsize=2, retries=False)

    def post(self, url: str, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> HttpAnswer:
        """Send `payload` as UTF-8 JSON; NotifyError(retryable=True) if no answer came back."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        all_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        try:
            resp = self._http.request(
                "POST", url, body=body, headers=all_headers, timeout=self._timeout, retries=False, redirect=False
            )
        except urllib3.exceptions.TimeoutError as exc:
            raise NotifyError(f"{self.where}: timed out ({type(exc).__name__})", retryable=True) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # The text of these errors names host and port, never the path or query with the token.
            raise NotifyError(f"{self.where}: unreachable ({type(exc).__name__})", retryable=True) from exc
        return HttpAnswer(resp.status, resp.data)

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.clear()


def raise_for_status(answer: HttpAnswer, where: str) -> None:
    """NotifyError unless the status is 2xx: retryable for 408, 429 and 5xx, permanent otherwise."""
    if 200 <= answer.status < 300:
        return
    retryable = answer.status >= 500 or answer.status in _RETRYABLE_STATUS
    raise NotifyError(f"{where}: HTTP {answer.status} {answer.text}", retryable=retryable, status=answer.status)


@dataclass(frozen=True, slots=True)
class RobotReply:
    """A robot's own verdict in its answer body: `code` 0 is success; None if the body had no code."""

    code: int | None
    message: str


def check_robot_reply(answer: HttpAnswer, reply: RobotReply, where: str, *, rate_limited: bool) -> None:
    """Raise the NotifyError that a robot's answer means; return if the message was taken.

    A rate-limit code is retryable whatever the HTTP status (some robots send it with 400); then the HTTP
    status decides; then any other non-zero code is permanent. A 2xx answer without a code is retryable:
    whether the message was posted is unknown, and a repeat is better than a lost alert.
    """
    if reply.code is not None and rate_limited:
        raise NotifyError(f"{where}: rate limited ({reply.code} {reply.message})", retryable=True, status=answer.status)
    raise_for_status(answer, where)
    if reply.code is None:
        raise NotifyError(f"{where}: unexpected answer {answer.text}", retryable=True, status=answer.status)
    if reply.code != 0:
        raise NotifyError(f"{where}: refused ({reply.code} {reply.message})", retryable=False, status=answer.status)
