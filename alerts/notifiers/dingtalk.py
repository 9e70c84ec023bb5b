"""DingTalkNotifier: a DingTalk (钉钉) custom group robot, markdown messages.

    POST https://oapi.dingtalk.com/robot/send?access_token=TOKEN[&timestamp=MS&sign=SIGN]
    {"msgtype": "markdown",
     "markdown": {"title": "<title>", "text": "### <title>\\n\\n<text>[\\n\\n@13800000000 ...]"},
     "at": {"atMobiles": ["13800000000"], "isAtAll": false}}

Signed mode (the robot's "加签" secret), as DingTalk documents it: ``timestamp`` is the current time in
milliseconds, ``sign`` = URL-encode(Base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))), both
appended to the webhook URL. The robot refuses a timestamp more than an hour off.

The robot answers HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``. ``errcode`` 130101 ("send too fast,
exceed 20 times per minute") is its rate limit: retryable. Any other non-zero code (310000: keyword,
signature or IP check failed; 300001: bad token; ...) is permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import urllib3

from alerts.model import Notification
from alerts.notifiers.jsonhttp import JsonPoster, RobotReply, check_robot_reply, redact_url

if TYPE_CHECKING:
    from alerts.notifiers.config import DingTalkConfig

RATE_LIMITED = frozenset({130101})


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` URL parameter (already URL-encoded) for `timestamp_ms`."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingTalkNotifier:
    """Posts each notification to one DingTalk robot as a markdown message."""

    def __init__(
        self,
        config: DingTalkConfig,
        *,
        http: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = config.name
        self._url = config.url.get_secret_value()
        self._secret = config.secret.get_secret_value() if config.secret is not None else None
        self._at_mobiles = list(config.at_mobiles)
        self._at_all = config.at_all
        self._clock = clock
        self._poster = JsonPoster(f"DingTalk robot {config.name!r} ({redact_url(self._url)})", config.timeout_s, http)

    def send(self, notification: Notification) -> None:
        answer = self._poster.post(self._signed_url(), self._payload(notification))
        body = answer.json_object() or {}
        code = body.get("errcode")
        reply = RobotReply(code if isinstance(code, int) else None, str(body.get("errmsg", "")))
        check_robot_reply(answer, reply, self._poster.where, rate_limited=reply.code in RATE_LIMITED)

    def _signed_url(self) -> str:
        if self._secret is None:
            return self._url
        timestamp = int(self._clock() * 1000)
        separator = "&" if "?" in self._url else "?"
        return f"{self._url}{separator}timestamp={timestamp}&sign={dingtalk_sign(self._secret, timestamp)}"

    def _payload(self, notification: Notification) -> dict[str, Any]:
        text = f"### {notification.title}\n\n{notification.text}"
        if self._at_mobiles:  # a mention shows only if the number also appears in the text
            text += "\n\n" + " ".join(f"@{m}" for m in self._at_mobiles)
        return {
            "msgtype": "markdown",
            "markdown": {"title": notification.title, "text": text},
            "at": {"atMobiles": self._at_mobiles, "isAtAll": self._at_all},
        }
