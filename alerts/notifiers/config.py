"""The configuration of each notification channel, and the registry that builds a channel from it.

Each channel is one table whose `type` names its kind (the key of ``NOTIFIERS``) and whose `name` is the
one that routes list in ``channels``:

    [[alerts.channel]]
    type = "dingtalk"
    name = "duty_dingtalk"
    url = "https://oapi.dingtalk.com/robot/send?access_token=..."
    secret = "SEC..."                 # optional: the robot's signing secret

Secrets (``secret``, ``password``, header values and every robot ``url``, which carries the robot's token)
are ``SecretStr``: they show as ``'**********'`` in a repr and in ``model_dump``. The checks that read them
run on the whole model, so a validation error quotes a dict, never the secret string on its own, and the
messages name the key, not the value. ``parse_notifier_config`` raises a ``ConfigError`` that quotes nothing.

``mqtt`` has a config and no notifier: the alerts manager publishes to the broker itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError, model_validator

from alerts.interfaces import Notifier
from alerts.notifiers.dingtalk import DingTalkNotifier
from alerts.notifiers.feishu import FeishuNotifier
from alerts.notifiers.log import LogNotifier
from alerts.notifiers.mail import EmailNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.notifiers.wecom import WeComNotifier
from ingest.errors import ConfigError

_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
Timeout = Annotated[float, Field(gt=0, le=300)]


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(pattern=_NAME)


def _http_url(url: SecretStr, key: str = "url") -> str:
    """The URL's text if it is http(s)://host/...; ValueError naming `key` (never the value) if not."""
    text = url.get_secret_value()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.fragment:
        raise ValueError(f"{key} must have no user:password@ and no #fragment")
    return text


def _query_param(text: str, param: str) -> str:
    values = parse_qs(urlsplit(text).query).get(param, [])
    return values[0] if len(values) == 1 else ""


class WebhookConfig(_Channel):
    """A generic HTTP endpoint: POST of the notification as JSON, with an Idempotency-Key header."""

    type: Literal["webhook"]
    url: SecretStr
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout_s: Timeout = 10.0

    @model_validator(mode="after")
    def _valid(self) -> WebhookConfig:
        _http_url(self.url)
        for header in self.headers:
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", header):
                raise ValueError(f"headers: {header!r} is not a valid header name")
        return self


class DingTalkConfig(_Channel):
    """A DingTalk (钉钉) custom group robot: https://oapi.dingtalk.com/robot/send?access_token=..."""

    type: Literal["dingtalk"]
    url: SecretStr
    secret: SecretStr | None = None  # the "加签" secret (SEC...): sign every request
    at_mobiles: tuple[str, ...] = ()
    at_all: bool = False
    timeout_s: Timeout = 10.0

    @model_validator(mode="after")
    def _valid(self) -> DingTalkConfig:
        if not _query_param(_http_url(self.url), "access_token"):
            raise ValueError("url must carry the robot's access_token=... (copy the robot's webhook URL)")
        if any(not re.fullmatch(r"\+?[0-9-]{5,20}", m) for m in self.at_mobiles):
            raise ValueError("at_mobiles must be phone numbers")
        return self


class WeComConfig(_Channel):
    """A WeCom (企业微信) group robot: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."""

    type: Literal["wecom"]
    url: SecretStr
    timeout_s: Timeout = 10.0

    @model_validator(mode="after")
    def _valid(self) -> WeComConfig:
        if not _query_param(_http_url(self.url), "key"):
            raise ValueError("url must carry the robot's key=... (copy the robot's webhook URL)")
        return self


class FeishuConfig(_Channel):
    """A Feishu (飞书) custom bot: https://open.feishu.cn/open-apis/bot/v2/hook/<token>."""

    type: Literal["feishu"]
    url: SecretStr
    secret: SecretStr | None = None  # the "签名校验" secret: sign every request
    timeout_s: Timeout = 10.0

    @model_validator(mode="after")
    def _valid(self) -> FeishuConfig:
        if not re.search(r"/hook/[^/]+$", urlsplit(_http_url(self.url)).path):
            raise ValueError("url must end in /hook/<token> (copy the bot's webhook URL)")
        return self


class EmailConfig(_Channel):
    """A mailbox reached through an SMTP server. `from` is the sender, `to` the recipients."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default: 465 with ssl, 587 with starttls, else 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: SecretStr | None = None
    from_addr: str = Field(alias="from")
    to: tuple[str, ...] = Field(min_length=1)
    timeout_s: Timeout = 30.0

    @model_validator(mode="after")
    def _valid(self) -> EmailConfig:
        if self.starttls and self.ssl:
            raise ValueError("starttls and ssl exclude each other (ssl: TLS from the start, port 465)")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        for address in (self.from_addr, *self.to):
            if not _ADDRESS.fullmatch(address):
                raise ValueError(f"{address!r} is not an e-mail address (from and to take bare addresses)")
        return self

    @property
    def smtp_port(self) -> int:
        if self.port is not None:
            return self.port
        return 465 if self.ssl else 587 if self.starttls else 25


class LogConfig(_Channel):
    """One log line per notification, through the standard logging module."""

    type: Literal["log"]
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"
    logger: str = Field(default="parkwatch.notifications", min_length=1)


class MqttConfig(_Channel):
    """Alerts published to the broker by the alerts manager (no notifier here): park/{park}/alerts/..."""

    type: Literal["mqtt"]
    topic_prefix: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _valid(self) -> MqttConfig:
        prefix = self.topic_prefix
        if prefix is not None and (set(prefix) & {"#", "+", "\0"} or prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError("topic_prefix must be a topic without wildcards and without a leading or trailing /")
        return self


NotifierConfig = Annotated[
    WebhookConfig | DingTalkConfig | WeComConfig | FeishuConfig | EmailConfig | LogConfig | MqttConfig,
    Field(discriminator="type"),
]

# type name -> builder; the same key as the `type` field above. Each builder takes the config of its own
# type (hence Any). "mqtt" is absent on purpose: the alerts manager publishes those itself.
NOTIFIERS: dict[str, Callable[[Any], Notifier]] = {
    "webhook": WebhookNotifier,
    "dingtalk": DingTalkNotifier,
    "wecom": WeComNotifier,
    "feishu": FeishuNotifier,
    "email": EmailNotifier,
    "log": LogNotifier,
}

_ADAPTER: TypeAdapter[NotifierConfig] = TypeAdapter(NotifierConfig)


def parse_notifier_config(raw: Mapping[str, Any], key: str = "alerts.channel") -> NotifierConfig:
    """Validate one channel table; ConfigError naming `key` and the bad field, never quoting a value."""
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in error["loc"][1:])  # loc[0] is the `type` tag
        reason = {"extra_forbidden": "unknown key", "value_error": str(error.get("ctx", {}).get("error"))}.get(
            error["type"], error["msg"]
        )
        raise ConfigError(f"{key}.{where}" if where else key, reason) from None
