"""WeComNotifier: a WeCom (企业微信) group robot, markdown messages.

    POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY
    {"msgtype": "markdown", "markdown": {"content": "### <title>\\n<text>"}}

The robot takes at most 4096 bytes of UTF-8 in ``markdown.content`` (more is refused with errcode 40058), so
a longer content is cut on a character boundary and ends with "…".

The robot answers HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``. ``errcode`` 45009 ("api freq out of
limit", 20 messages a minute per robot) is its rate limit: retryable. Any other non-zero code (93000: bad
key; 40058: content too long; ...) is permanent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import urllib3

from alerts.model import Notification
from alerts.notifiers.jsonhttp import JsonPoster, RobotReply, check_robot_reply, redact_url

if TYPE_CHECKING:
    from alerts.notifiers.config import WeComConfig

RATE_LIMITED = frozenset({45009})
MAX_CONTENT_BYTES = 4096
_ELLIPSIS = "…"


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` if its UTF-8 fits in `max_bytes`; else its longest prefix that fits with a trailing "…"."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    room = max_bytes - len(_ELLIPSIS.encode("utf-8"))
    # Valid UTF-8 cut anywhere leaves at most one incomplete character at the end: "ignore" drops it.
    return data[: max(room, 0)].decode("utf-8", "ignore") + _ELLIPSIS


class WeComNotifier:
    """Posts each notification to one WeCom group robot as a markdown message."""

    def __init__(self, config: WeComConfig, *, http: urllib3.PoolManager | None = None) -> None:
        self.name = config.name
        self._url = config.url.get_secret_value()
        self._poster = JsonPoster(f"WeCom robot {config.name!r} ({redact_url(self._url)})", config.timeout_s, http)

    def send(self, notification: Notification) -> None:
        answer = self._poster.post(self._url, payload(notification))
        body = answer.json_object() or {}
        code = body.get("errcode")
        reply = RobotReply(code if isinstance(code, int) else None, str(body.get("errmsg", "")))
        check_robot_reply(answer, reply, self._poster.where, rate_limited=reply.code in RATE_LIMITED)


def payload(notification: Notification) -> dict[str, Any]:
    """The robot's markdown message, within its size limit."""
    content = truncate_utf8(f"### {notification.title}\n{notification.text}", MAX_CONTENT_BYTES)
    return {"msgtype": "markdown", "markdown": {"content": content}}
