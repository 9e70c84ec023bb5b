"""FeishuNotifier: a Feishu (飞书) custom bot, rich-text ("post") messages.

    POST https://open.feishu.cn/open-apis/bot/v2/hook/TOKEN
    {"msg_type": "post",
     "content": {"post": {"zh_cn": {"title": "<title>",
                                    "content": [[{"tag": "text", "text": "<line 1>"}], ...]}}},
     "timestamp": "1700000000", "sign": "..."}              (only with a signing secret)

"post" and not an "interactive" card: the text is already rendered, a post shows it line by line with a
title, and it has no card schema to keep up with. One paragraph per line of the text.

Signed mode (the bot's "签名校验" secret), as Feishu documents it: ``timestamp`` is the current time in
SECONDS, ``sign`` = Base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")), both in the JSON body. The
bot refuses a timestamp more than an hour off (code 19021, like a wrong signature).

The bot answers ``{"code": 0, "msg": "success", ...}`` (older bots: ``StatusCode``/``StatusMessage``),
with HTTP 200 or, for errors, sometimes 400. Rate limits, retryable: 11232 ("frequency limited", 100 a
minute and 5 a second per bot), and 9499 when its message says "too many request". 9499 is also Feishu's
generic "Bad Request" (a body the bot cannot parse): that one is permanent. Every other non-zero code
(19021 signature, 19024 keyword, 19022 IP, ...) is permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import urllib3

from alerts.model import Notification
from alerts.notifiers.jsonhttp import HttpAnswer, JsonPoster, RobotReply, check_robot_reply, redact_url

if TYPE_CHECKING:
    from alerts.notifiers.config import FeishuConfig

FREQUENCY_LIMITED = 11232
TOO_MANY_REQUESTS = 9499


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """The `sign` body field for `timestamp_s`."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def is_rate_limited(reply: RobotReply) -> bool:
    """Whether the bot's code says "too fast" (retry later), not "bad request"."""
    if reply.code == FREQUENCY_LIMITED:
        return True
    return reply.code == TOO_MANY_REQUESTS and "too many request" in reply.message.lower()


class FeishuNotifier:
    """Posts each notification to one Feishu custom bot as a rich-text post."""

    def __init__(
        self,
        config: FeishuConfig,
        *,
        http: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = config.name
        self._url = config.url.get_secret_value()
        self._secret = config.secret.get_secret_value() if config.secret is not None else None
        self._clock = clock
        self._poster = JsonPoster(f"Feishu bot {config.name!r} ({redact_url(self._url)})", config.timeout_s, http)

    def send(self, notification: Notification) -> None:
        body = payload(notification)
        if self._secret is not None:
            timestamp = int(self._clock())
            body |= {"timestamp": str(timestamp), "sign": feishu_sign(self._secret, timestamp)}
        answer = self._poster.post(self._url, body)
        reply = _reply(answer)
        check_robot_reply(answer, reply, self._poster.where, rate_limited=is_rate_limited(reply))


def payload(notification: Notification) -> dict[str, Any]:
    """The bot's post message: the title, and one paragraph per line of the text."""
    paragraphs = [[{"tag": "text", "text": line}] for line in notification.text.split("\n")]
    return {
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": notification.title, "content": paragraphs}}},
    }


def _reply(answer: HttpAnswer) -> RobotReply:
    body = answer.json_object() or {}
    code = body.get("code", body.get("StatusCode"))
    message = body.get("msg", body.get("StatusMessage", ""))
    return RobotReply(code if isinstance(code, int) else None, str(message))
