"""Notification channels, one module per channel, registered by config name in ``config.NOTIFIERS``.

    type        class              module      sends
    webhook     WebhookNotifier    webhook     JSON POST with Idempotency-Key, to any HTTP endpoint
    dingtalk    DingTalkNotifier   dingtalk    DingTalk (钉钉) robot markdown, optionally signed
    wecom       WeComNotifier      wecom       WeCom (企业微信) robot markdown, cut to 4096 bytes
    feishu      FeishuNotifier     feishu      Feishu (飞书) bot rich-text post, optionally signed
    email       EmailNotifier      mail        plain-text e-mail through SMTP (STARTTLS, TLS, login)
    log         LogNotifier        log         one log line
    mqtt        (config only)      config      published by the alerts manager itself

A notifier sends one notification and raises ``NotifyError`` (``retryable`` or not); the outbox owns
retrying. Constructors do no I/O; HTTP pool, SMTP factory and clock come in through them.
"""

from alerts.notifiers.config import (
    NOTIFIERS,
    DingTalkConfig,
    EmailConfig,
    FeishuConfig,
    LogConfig,
    MqttConfig,
    NotifierConfig,
    WebhookConfig,
    WeComConfig,
    parse_notifier_config,
)
from alerts.notifiers.dingtalk import DingTalkNotifier
from alerts.notifiers.feishu import FeishuNotifier
from alerts.notifiers.log import LogNotifier
from alerts.notifiers.mail import EmailNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.notifiers.wecom import WeComNotifier

__all__ = [
    "NOTIFIERS",
    "DingTalkConfig",
    "DingTalkNotifier",
    "EmailConfig",
    "EmailNotifier",
    "FeishuConfig",
    "FeishuNotifier",
    "LogConfig",
    "LogNotifier",
    "MqttConfig",
    "NotifierConfig",
    "WeComConfig",
    "WeComNotifier",
    "WebhookConfig",
    "WebhookNotifier",
    "parse_notifier_config",
]
