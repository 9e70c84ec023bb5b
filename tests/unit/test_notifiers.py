"""Notification channels against real local servers: an HTTP server that records and answers as scripted, and
an aiosmtpd SMTP server. Nothing leaves 127.0.0.1; the robots' real hosts are never contacted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest
import urllib3
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from alerts.interfaces import NotifyError
from alerts.model import Alert, Notification
from alerts.notifiers import (
    NOTIFIERS,
    DingTalkNotifier,
    EmailNotifier,
    FeishuNotifier,
    LogNotifier,
    NotifierConfig,
    WebhookNotifier,
    WeComNotifier,
    parse_notifier_config,
)
from alerts.notifiers.wecom import MAX_CONTENT_BYTES, truncate_utf8
from ingest.errors import ConfigError
from tests.conftest import require_binary
from tests.servers import free_port

HOST = "127.0.0.1"
NOW_S = 1_700_000_000.123  # the injected clock
DING_SECRET = "SECdemo-secret"
FEISHU_SECRET = "feishu-demo-secret"
TOKEN = "tok-3f9a7c"  # stands for a robot's access token / key in its URL


# --- a real HTTP server that records requests and answers as scripted --------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] = b"{}"
    hang: bool = False  # answer nothing until the test ends: the client times out


@dataclass(frozen=True)
class Recorded:
    path: str  # with the raw query string
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    @property
    def raw_query(self) -> dict[str, str]:
        """The query parameters exactly as sent, not URL-decoded."""
        return dict(p.split("=", 1) for p in urlsplit(self.path).query.split("&") if p)


class _Handler(BaseHTTPRequestHandler):
    server: RecordingServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        reply = self.server.next_reply()
        if reply.hang:
            self.server.release.wait(10)
            self.close_connection = True
            return
        data = json.dumps(reply.body).encode() if isinstance(reply.body, dict) else reply.body
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _Handler)
        self.requests: list[Recorded] = []
        self.default = Reply(200, {"errcode": 0, "errmsg": "ok"})
        self.release = threading.Event()
        self._script: queue.SimpleQueue[Reply] = queue.SimpleQueue()

    def answer(self, *replies: Reply) -> None:
        """The next requests get these replies, in order; later ones get `default`."""
        for reply in replies:
            self._script.put(reply)

    def next_reply(self) -> Reply:
        try:
            return self._script.get_nowait()
        except queue.Empty:
            return self.default

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.server_address[1]}{path}"

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), name="recording-http", daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


# --- notifications and configs ---------------------------------------------------------------------------


def notification(text: str = "ST01 PM2.5 180 µg/m³ > 150\n请立即核查", title: str = "[major] PM2.5 超标 ST01",
                 nid: str = "a1-firing-ops") -> Notification:
    at = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
    alert = Alert(
        alert_id="a1", rule="pm25_high", source="ST01", severity="major", state="firing", started_at=at,
        updated_at=at, value=180.0, threshold=150.0, message="PM2.5 over 150", message_zh="PM2.5 超过 150",
    )
    return Notification(nid, "state", (alert,), title, text)


def webhook(srv: RecordingServer, **extra: Any) -> WebhookNotifier:
    config = parse_notifier_config({"type": "webhook", "name": "ops", "url": srv.url("/hook"), **extra})
    return WebhookNotifier(config, http=urllib3.PoolManager(retries=False))  # type: ignore[arg-type]


def dingtalk(srv: RecordingServer, **extra: Any) -> DingTalkNotifier:
    url = srv.url(f"/robot/send?access_token={TOKEN}")
    config = parse_notifier_config({"type": "dingtalk", "name": "duty", "url": url, **extra})
    return DingTalkNotifier(config, clock=lambda: NOW_S)  # type: ignore[arg-type]


def wecom(srv: RecordingServer, **extra: Any) -> WeComNotifier:
    url = srv.url(f"/cgi-bin/webhook/send?key={TOKEN}")
    return WeComNotifier(parse_notifier_config({"type": "wecom", "name": "wx", "url": url, **extra}))  # type: ignore[arg-type]


def feishu(srv: RecordingServer, **extra: Any) -> FeishuNotifier:
    srv.default = Reply(200, {"code": 0, "msg": "success", "data": {}})
    url = srv.url(f"/open-apis/bot/v2/hook/{TOKEN}")
    config = parse_notifier_config({"type": "feishu", "name": "fs", "url": url, **extra})
    return FeishuNotifier(config, clock=lambda: NOW_S)  # type: ignore[arg-type]


def send_error(notifier: Any, note: Notification | None = None) -> NotifyError:
    with pytest.raises(NotifyError) as caught:
        notifier.send(note or notification())
    return caught.value


# --- configuration ---------------------------------------------------------------------------------------


class TestConfig:
    def test_every_type_is_registered_but_mqtt(self) -> None:
        """NOTIFIERS has a builder for every `type` of the config union except mqtt, which the manager does."""
        union = get_args(get_args(NotifierConfig)[0])
        types = {get_args(model.model_fields["type"].annotation)[0] for model in union}
        assert set(NOTIFIERS) == types - {"mqtt"}

    def test_each_table_builds_its_notifier(self) -> None:
        """Each channel table parses into its own model, and NOTIFIERS[type] builds a notifier named as it."""
        tables: list[dict[str, Any]] = [
            {"type": "webhook", "name": "a", "url": "https://example.invalid/x"},
            {"type": "dingtalk", "name": "b", "url": "https://oapi.dingtalk.com/robot/send?access_token=t"},
            {"type": "wecom", "name": "c", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"},
            {"type": "feishu", "name": "d", "url": "https://open.feishu.cn/open-apis/bot/v2/hook/h"},
            {"type": "email", "name": "e", "host": "mail.invalid", "from": "pw@park.invalid", "to": ["x@y.invalid"]},
            {"type": "log", "name": "f"},
        ]
        for table in tables:
            notifier = NOTIFIERS[table["type"]](parse_notifier_config(table))
            assert notifier.name == table["name"]

    def test_mqtt_takes_an_optional_topic_prefix(self) -> None:
        """An mqtt channel has a config (topic_prefix optional, no wildcards) and no notifier."""
        assert parse_notifier_config({"type": "mqtt", "name": "m"}).topic_prefix is None  # type: ignore[union-attr]
        with pytest.raises(ConfigError):
            parse_notifier_config({"type": "mqtt", "name": "m", "topic_prefix": "park/#"})

    def test_secrets_never_show(self) -> None:
        """Secrets, header values and robot URLs (which hold tokens) show as ********** in repr and dumps."""
        configs = [
            parse_notifier_config({"type": "dingtalk", "name": "b", "secret": "SECxyz",
                                   "url": f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"}),
            parse_notifier_config({"type": "feishu", "name": "d", "secret": "SECxyz",
                                   "url": f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}"}),
            parse_notifier_config({"type": "webhook", "name": "a", "url": f"https://h.invalid/?token={TOKEN}",
                                   "headers": {"Authorization": "Bearer SECxyz"}}),
            parse_notifier_config({"type": "email", "name": "e", "host": "h", "from": "a@b.invalid", "to": ["c@d"],
                                   "username": "u", "password": "SECxyz"}),
        ]
        for config in configs:
            for shown in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
                assert "SECxyz" not in shown
                assert TOKEN not in shown

    def test_a_bad_url_is_refused_without_quoting_it(self) -> None:
        """A robot URL without its token is refused; the error names the key, never the (secret) value."""
        with pytest.raises(ConfigError) as caught:
            parse_notifier_config({"type": "dingtalk", "name": "b", "url": f"https://h.invalid/send?t={TOKEN}"})
        assert "access_token" in str(caught.value)
        assert TOKEN not in str(caught.value)
        with pytest.raises(ConfigError) as caught:
            parse_notifier_config({"type": "wecom", "name": "c", "url": f"ftp://h.invalid/?key={TOKEN}"})
        assert TOKEN not in str(caught.value)

    def test_unknown_keys_and_bad_names_are_refused(self) -> None:
        """extra="forbid": a typo in a key is an error naming it; a channel name is an id."""
        with pytest.raises(ConfigError) as caught:
            parse_notifier_config({"type": "log", "name": "f", "levle": "INFO"}, key="alerts.channel[3]")
        assert caught.value.key == "alerts.channel[3].levle"
        assert caught.value.reason == "unknown key"
        with pytest.raises(ConfigError):
            parse_notifier_config({"type": "log", "name": "has space"})
        with pytest.raises(ConfigError):
            parse_notifier_config({"type": "pager", "name": "x"})

    def test_email_options_are_checked(self) -> None:
        """ssl and starttls exclude each other, username goes with password, and the port follows the mode."""
        base = {"type": "email", "name": "e", "host": "h", "from": "a@b.invalid", "to": ["c@d.invalid"]}
        with pytest.raises(ConfigError):
            parse_notifier_config({**base, "ssl": True, "starttls": True})
        with pytest.raises(ConfigError):
            parse_notifier_config({**base, "username": "u"})
        with pytest.raises(ConfigError):
            parse_notifier_config({**base, "to": ["Ops <c@d.invalid>"]})
        ports = [parse_notifier_config({**base, **mode}).smtp_port  # type: ignore[union-attr]
                 for mode in ({}, {"starttls": True}, {"ssl": True}, {"port": 2525})]
        assert ports == [25, 587, 465, 2525]

    def test_configs_are_frozen(self) -> None:
        """A channel config cannot be changed after start-up."""
        config = parse_notifier_config({"type": "log", "name": "f"})
        with pytest.raises(ValueError, match="frozen"):
            config.name = "g"


# --- generic webhook -------------------------------------------------------------------------------------


class TestWebhook:
    def test_posts_the_notification_as_json(self, server: RecordingServer) -> None:
        """The body is {kind, notification_id, title, text, alerts: [Alert.to_json_dict()]} in UTF-8 JSON."""
        note = notification()
        webhook(server).send(note)
        request = server.last
        assert request.path == "/hook"
        assert request.headers["content-type"] == "application/json; charset=utf-8"
        assert request.json == {
            "kind": "state", "notification_id": "a1-firing-ops", "title": note.title, "text": note.text,
            "alerts": [note.alerts[0].to_json_dict()],
        }

    def test_carries_an_idempotency_key_and_configured_headers(self, server: RecordingServer) -> None:
        """Idempotency-Key is the notification id, the same on a resend; configured headers are sent too."""
        notifier = webhook(server, headers={"Authorization": "Bearer abc"})
        notifier.send(notification(nid="n-42"))
        notifier.send(notification(nid="n-42"))
        assert [r.headers["idempotency-key"] for r in server.requests] == ["n-42", "n-42"]
        assert server.last.headers["authorization"] == "Bearer abc"

    @pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
    def test_server_trouble_is_retryable(self, server: RecordingServer, status: int) -> None:
        """5xx, 429 and 408 are transient: retryable, with the status."""
        server.answer(Reply(status, b"busy"))
        error = send_error(webhook(server))
        assert error.retryable
        assert error.status == status

    @pytest.mark.parametrize("status", [400, 401, 404, 413, 301])
    def test_refusals_are_permanent(self, server: RecordingServer, status: int) -> None:
        """Other 4xx (and a redirect, which is not followed) are permanent."""
        server.answer(Reply(status, b'{"error": "bad"}'))
        error = send_error(webhook(server))
        assert not error.retryable
        assert error.status == status

    def test_a_timeout_is_retryable(self, server: RecordingServer) -> None:
        """An endpoint that does not answer within timeout_s gives a retryable error."""
        server.answer(Reply(hang=True))
        error = send_error(webhook(server, timeout_s=0.3))
        assert error.retryable
        assert "timed out" in str(error)
        assert isinstance(error.__cause__, urllib3.exceptions.TimeoutError)

    def test_connection_refused_is_retryable(self) -> None:
        """Nothing listening on the port: retryable."""
        url = f"http://{HOST}:{free_port()}/hook?token={TOKEN}"
        notifier = WebhookNotifier(parse_notifier_config({"type": "webhook", "name": "a", "url": url}))  # type: ignore[arg-type]
        error = send_error(notifier)
        assert error.retryable
        assert TOKEN not in str(error)
        assert TOKEN not in str(error.__cause__)


# --- DingTalk --------------------------------------------------------------------------------------------


def documented_dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's documented recipe: quote_plus(base64(HmacSHA256(secret, f"{timestamp}\\n{secret}")))."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    return quote_plus(base64.b64encode(hmac.new(secret.encode(), string_to_sign, digestmod=hashlib.sha256).digest()))


class TestDingTalk:
    def test_sends_markdown_with_title_and_text(self, server: RecordingServer) -> None:
        """msgtype markdown: markdown.title is the title, markdown.text a heading and the text."""
        note = notification()
        dingtalk(server).send(note)
        assert server.last.json == {
            "msgtype": "markdown",
            "markdown": {"title": note.title, "text": f"### {note.title}\n\n{note.text}"},
            "at": {"atMobiles": [], "isAtAll": False},
        }
        assert server.last.raw_query == {"access_token": TOKEN}

    def test_mentions_the_configured_mobiles(self, server: RecordingServer) -> None:
        """at_mobiles go into at.atMobiles and, as @number, into the text (where DingTalk needs them)."""
        dingtalk(server, at_mobiles=["13800000000"]).send(notification())
        body = server.last.json
        assert body["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
        assert body["markdown"]["text"].endswith("\n\n@13800000000")

    def test_signed_mode_appends_timestamp_and_sign(self, server: RecordingServer) -> None:
        """With a secret, the URL gets timestamp (ms) and sign as DingTalk documents them."""
        dingtalk(server, secret=DING_SECRET).send(notification())
        query = server.last.raw_query
        timestamp = int(NOW_S * 1000)
        assert query["access_token"] == TOKEN
        assert query["timestamp"] == str(timestamp)
        assert query["sign"] == documented_dingtalk_sign(DING_SECRET, timestamp)
        # Known answer, computed once with `openssl dgst -sha256 -hmac` (an implementation of its own):
        assert timestamp == 1700000000123
        assert query["sign"] == quote_plus("hmmlKE1tANSne7MnT44d1tjX8cNsBbp6ATB/Uf1y49o=")
        assert parse_qs(urlsplit(server.last.path).query)["sign"] == ["hmmlKE1tANSne7MnT44d1tjX8cNsBbp6ATB/Uf1y49o="]

    def test_unsigned_mode_sends_no_signature(self, server: RecordingServer) -> None:
        """Without a secret, the URL is the configured one."""
        dingtalk(server).send(notification())
        assert "sign" not in server.last.raw_query

    def test_rate_limit_errcode_is_retryable(self, server: RecordingServer) -> None:
        """errcode 130101 (send too fast) in a 200 answer: retryable."""
        server.answer(Reply(200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}))
        error = send_error(dingtalk(server))
        assert error.retryable
        assert "130101" in str(error)

    @pytest.mark.parametrize("errcode", [310000, 300001, 400013])
    def test_other_errcodes_are_permanent(self, server: RecordingServer, errcode: int) -> None:
        """Any other non-zero errcode (keywords, signature, token) is permanent."""
        server.answer(Reply(200, {"errcode": errcode, "errmsg": "sign not match"}))
        error = send_error(dingtalk(server, secret=DING_SECRET))
        assert not error.retryable
        assert str(errcode) in str(error)
        assert TOKEN not in str(error)
        assert DING_SECRET not in str(error)

    def test_an_answer_without_errcode_is_retryable(self, server: RecordingServer) -> None:
        """A 200 that is not the robot's JSON (a proxy page): delivery unknown, so retryable."""
        server.answer(Reply(200, b"<html>gateway</html>"))
        assert send_error(dingtalk(server)).retryable

    def test_http_errors_follow_the_status(self, server: RecordingServer) -> None:
        """500 is retryable, 400 permanent, as for any HTTP endpoint."""
        server.answer(Reply(500, b""), Reply(400, b""))
        notifier = dingtalk(server)
        assert send_error(notifier).retryable
        assert not send_error(notifier).retryable


# --- WeCom -----------------------------------------------------------------------------------------------


class TestWeCom:
    def test_sends_markdown_content(self, server: RecordingServer) -> None:
        """msgtype markdown with content = a heading and the text; the key stays in the URL."""
        note = notification()
        wecom(server).send(note)
        assert server.last.json == {"msgtype": "markdown", "markdown": {"content": f"### {note.title}\n{note.text}"}}
        assert server.last.raw_query == {"key": TOKEN}

    def test_long_chinese_content_is_cut_on_a_character_boundary(self, server: RecordingServer) -> None:
        """Content over 4096 UTF-8 bytes is cut to fit, on a character boundary, ending with "…"."""
        note = notification(text="颗粒物浓度超标，" * 400)  # 3 bytes a character: ~9600 bytes
        wecom(server).send(note)
        content = server.last.json["markdown"]["content"]
        full = f"### {note.title}\n{note.text}"
        assert len(content.encode("utf-8")) <= MAX_CONTENT_BYTES
        assert len(content.encode("utf-8")) > MAX_CONTENT_BYTES - 6
        assert content.endswith("…")
        assert full.startswith(content[:-1])

    def test_truncation_never_splits_a_character(self) -> None:
        """For every limit, the cut text is valid, fits, and is a prefix of the original."""
        text = "PM2.5 超标 µg/m³ 🚨 氨气 " * 3
        for limit in range(3, len(text.encode()) + 2):
            cut = truncate_utf8(text, limit)
            assert len(cut.encode("utf-8")) <= limit
            if cut != text:
                assert cut.endswith("…")
                assert text.startswith(cut[:-1])

    def test_content_at_the_limit_is_kept_whole(self) -> None:
        """Exactly 4096 bytes is not cut."""
        text = "氨" * 1365 + "a"  # 4095 + 1 bytes
        assert truncate_utf8(text, MAX_CONTENT_BYTES) == text

    def test_rate_limit_errcode_is_retryable(self, server: RecordingServer) -> None:
        """errcode 45009 (api freq out of limit): retryable."""
        server.answer(Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"}))
        assert send_error(wecom(server)).retryable

    def test_other_errcodes_are_permanent(self, server: RecordingServer) -> None:
        """errcode 93000 (invalid webhook url) and the like: permanent, and the key is not in the message."""
        server.answer(Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"}))
        error = send_error(wecom(server))
        assert not error.retryable
        assert TOKEN not in str(error)

    def test_a_timeout_is_retryable(self, server: RecordingServer) -> None:
        """A robot that does not answer in time: retryable."""
        server.answer(Reply(hang=True))
        assert send_error(wecom(server, timeout_s=0.3)).retryable


# --- Feishu ----------------------------------------------------------------------------------------------


def documented_feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's documented recipe: base64(HmacSHA256(key=f"{timestamp}\\n{secret}", msg=""))."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", digestmod=hashlib.sha256).digest()).decode()


class TestFeishu:
    def test_sends_a_post_with_title_and_one_paragraph_per_line(self, server: RecordingServer) -> None:
        """msg_type post, zh_cn: the title, and each line of the text as a text paragraph."""
        note = notification(text="第一行\nsecond line")
        feishu(server).send(note)
        assert server.last.json == {
            "msg_type": "post",
            "content": {"post": {"zh_cn": {"title": note.title, "content": [
                [{"tag": "text", "text": "第一行"}], [{"tag": "text", "text": "second line"}],
            ]}}},
        }
        assert server.last.path == f"/open-apis/bot/v2/hook/{TOKEN}"

    def test_signed_mode_puts_timestamp_and_sign_in_the_body(self, server: RecordingServer) -> None:
        """With a secret, the body has timestamp (seconds, a string) and sign as Feishu documents them."""
        feishu(server, secret=FEISHU_SECRET).send(notification())
        body = server.last.json
        assert body["timestamp"] == "1700000000"
        assert body["sign"] == documented_feishu_sign(FEISHU_SECRET, 1700000000)
        assert body["sign"] == "LJ3PlcwviZMXQxiZQ4Jou4SlI9YJEmjE2SI9xcS1EG0="  # openssl dgst -sha256 -hmac

    def test_unsigned_mode_sends_no_signature(self, server: RecordingServer) -> None:
        """Without a secret, the body has no timestamp and no sign."""
        feishu(server).send(notification())
        assert "sign" not in server.last.json and "timestamp" not in server.last.json

    @pytest.mark.parametrize(
        "reply",
        [
            Reply(200, {"code": 11232, "msg": "frequency limited psm[lark.oapi.app_platform_runtime]"}),
            Reply(400, {"code": 11232, "msg": "frequency limited"}),
            Reply(200, {"code": 9499, "msg": "too many request"}),
        ],
    )
    def test_rate_limits_are_retryable(self, server: RecordingServer, reply: Reply) -> None:
        """11232, and 9499 saying "too many request", are rate limits: retryable, whatever the HTTP status."""
        srv_notifier = feishu(server)
        server.answer(reply)
        assert send_error(srv_notifier).retryable

    @pytest.mark.parametrize(
        "reply",
        [
            Reply(400, {"code": 9499, "msg": "Bad Request", "data": {}}),
            Reply(200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}),
            Reply(200, {"code": 19024, "msg": "Key Words Not Found"}),
        ],
    )
    def test_other_codes_are_permanent(self, server: RecordingServer, reply: Reply) -> None:
        """9499 "Bad Request" and every other non-zero code are permanent."""
        notifier = feishu(server, secret=FEISHU_SECRET)
        server.answer(reply)
        error = send_error(notifier)
        assert not error.retryable
        assert TOKEN not in str(error)
        assert FEISHU_SECRET not in str(error)

    def test_the_legacy_status_fields_are_understood(self, server: RecordingServer) -> None:
        """An older bot's {"StatusCode": 0} is success too."""
        notifier = feishu(server)
        server.answer(Reply(200, {"Extra": None, "StatusCode": 0, "StatusMessage": "success"}))
        notifier.send(notification())


# --- log -------------------------------------------------------------------------------------------------


class TestLog:
    def test_writes_one_line_per_notification(self, caplog: pytest.LogCaptureFixture) -> None:
        """One record at the configured level: kind, id, severity, title and the text on one line."""
        notifier = LogNotifier(parse_notifier_config({"type": "log", "name": "f", "level": "ERROR"}))  # type: ignore[arg-type]
        with caplog.at_level(logging.DEBUG, logger="parkwatch.notifications"):
            notifier.send(notification(text="line one\n\nline two"))
        [record] = caplog.records
        assert record.levelno == logging.ERROR
        assert record.getMessage() == "state a1-firing-ops [major] [major] PM2.5 超标 ST01: line one | line two"


# --- e-mail, against a real aiosmtpd server ----------------------------------------------------------------


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps what it receives; `refuse` scripts an answer to RCPT."""

    received: list[Envelope] = field(default_factory=list)
    refuse: str | None = None

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse is not None:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 Message accepted for delivery"

    def message(self) -> Message:
        [envelope] = self.received
        assert isinstance(envelope.content, bytes)
        return message_from_bytes(envelope.content)


def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"duty", b"pa55-word")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 on a failure


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname=HOST, port=port, authenticator=authenticator, auth_require_tls=False)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def email_notifier(port: int, ssl_context: ssl.SSLContext | None = None, **extra: Any) -> EmailNotifier:
    table = {"type": "email", "name": "mail", "host": HOST, "port": port, "from": "parkwatch@park.example",
             "to": ["duty@park.example", "env@park.example"], "timeout_s": 5, **extra}
    return EmailNotifier(parse_notifier_config(table), ssl_context=ssl_context, clock=lambda: NOW_S)  # type: ignore[arg-type]


def header(msg: Message, name: str) -> str:
    return str(make_header(decode_header(msg[name])))


class TestEmail:
    def test_delivers_chinese_subject_and_body(self, smtp_server: tuple[Mailbox, int]) -> None:
        """Subject = title and body = text arrive intact (UTF-8), to every recipient, from the sender."""
        mailbox, port = smtp_server
        note = notification()
        email_notifier(port).send(note)
        [envelope] = mailbox.received
        assert envelope.mail_from == "parkwatch@park.example"
        assert envelope.rcpt_tos == ["duty@park.example", "env@park.example"]
        msg = mailbox.message()
        assert header(msg, "Subject") == note.title
        assert msg.get_content_type() == "text/plain"
        assert msg.get_content_charset() == "utf-8"
        payload = msg.get_payload(decode=True)
        assert isinstance(payload, bytes)
        assert payload.decode("utf-8").replace("\r\n", "\n").rstrip("\n") == note.text  # CRLF on the wire
        assert msg["Auto-Submitted"] == "auto-generated"
        assert parsedate_to_datetime(msg["Date"]) == datetime.fromtimestamp(int(NOW_S), UTC)  # the injected clock

    def test_message_id_is_derived_from_the_notification_id(self, smtp_server: tuple[Mailbox, int]) -> None:
        """A resend carries the same Message-ID; an id with odd characters is hashed into a valid one."""
        mailbox, port = smtp_server
        notifier = email_notifier(port)
        notifier.send(notification(nid="a1-firing-ops"))
        notifier.send(notification(nid="a1-firing-ops"))
        notifier.send(notification(nid="a1:firing/ops 2"))
        ids = [message_from_bytes(e.content)["Message-ID"] for e in mailbox.received]  # type: ignore[arg-type]
        assert ids[0] == ids[1] == "<a1-firing-ops.parkwatch@park.example>"
        digest = hashlib.sha256(b"a1:firing/ops 2").hexdigest()[:40]
        assert ids[2] == f"<{digest}.parkwatch@park.example>"
        assert message_from_bytes(mailbox.received[2].content)["X-ParkWatch-Notification-Id"] == "a1:firing/ops 2"  # type: ignore[arg-type]

    def test_logs_in_with_username_and_password(self, smtp_server: tuple[Mailbox, int]) -> None:
        """With username and password the notifier authenticates, and the server takes the message."""
        mailbox, port = smtp_server
        email_notifier(port, username="duty", password="pa55-word").send(notification())
        assert len(mailbox.received) == 1

    def test_a_wrong_password_is_permanent(self, smtp_server: tuple[Mailbox, int]) -> None:
        """535 authentication failed: permanent, and the password is not in the message."""
        mailbox, port = smtp_server
        error = send_error(email_notifier(port, username="duty", password="wrong-SECxyz"))
        assert not error.retryable
        assert error.status == 535
        assert "wrong-SECxyz" not in str(error)
        assert mailbox.received == []

    def test_a_permanent_refusal_is_permanent(self, smtp_server: tuple[Mailbox, int]) -> None:
        """550 for the recipients: permanent."""
        mailbox, port = smtp_server
        mailbox.refuse = "550 5.1.1 No such user"
        assert not send_error(email_notifier(port)).retryable

    def test_a_temporary_refusal_is_retryable(self, smtp_server: tuple[Mailbox, int]) -> None:
        """451 (greylisting, mailbox busy): retryable."""
        mailbox, port = smtp_server
        mailbox.refuse = "451 4.7.1 Greylisted, try again later"
        assert send_error(email_notifier(port)).retryable

    def test_no_server_is_retryable(self) -> None:
        """Nothing listening: retryable."""
        assert send_error(email_notifier(free_port())).retryable


# --- e-mail over TLS, with a certificate made for the test -------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        require_binary("openssl")  # fails on CI, skips elsewhere
        raise AssertionError("unreachable")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


class TestEmailTls:
    def test_starttls_then_login(self, certificate: tuple[Path, Path]) -> None:
        """STARTTLS against a server that requires it, then a login (which the server allows only over TLS)."""
        mailbox, port = Mailbox(), free_port()
        controller = Controller(mailbox, hostname=HOST, port=port, tls_context=server_context(certificate),
                                require_starttls=True, authenticator=authenticator)
        controller.start()
        try:
            trusted = ssl.create_default_context(cafile=str(certificate[0]))
            email_notifier(port, starttls=True, username="duty", password="pa55-word", ssl_context=trusted).send(
                notification()
            )
        finally:
            controller.stop()
        assert header(mailbox.message(), "Subject") == notification().title

    def test_tls_from_the_start(self, certificate: tuple[Path, Path]) -> None:
        """ssl = true: TLS from the first byte (SMTPS)."""
        mailbox, port = Mailbox(), free_port()
        controller = Controller(mailbox, hostname=HOST, port=port, ssl_context=server_context(certificate))
        controller.start()
        try:
            trusted = ssl.create_default_context(cafile=str(certificate[0]))
            email_notifier(port, ssl=True, ssl_context=trusted).send(notification())
        finally:
            controller.stop()
        assert len(mailbox.received) == 1

    def test_an_untrusted_certificate_is_permanent(self, certificate: tuple[Path, Path]) -> None:
        """A certificate the client does not trust: permanent (a configuration problem), nothing sent."""
        mailbox, port = Mailbox(), free_port()
        controller = Controller(mailbox, hostname=HOST, port=port, tls_context=server_context(certificate),
                                require_starttls=True)
        controller.start()
        try:
            error = send_error(email_notifier(port, starttls=True, ssl_context=ssl.create_default_context()))
        finally:
            controller.stop()
        assert not error.retryable
        assert mailbox.received == []
