"""EmailNotifier: a plain-text e-mail through an SMTP server (smtplib), one message per notification.

Subject = the title, body = the text (UTF-8), ``Message-ID: <ID.parkwatch@DOMAIN>`` where ID is the
notification id (or its SHA-256 if it holds characters a Message-ID cannot) and DOMAIN the sender's: a
resend of one notification carries the same Message-ID, which mail clients use to drop the duplicate.
``X-ParkWatch-Notification-Id`` repeats the id as it is; ``Auto-Submitted: auto-generated`` keeps
vacation responders quiet.

Connection: plain SMTP (port 25), STARTTLS (587) or TLS from the start (``ssl``, 465), then a login if a
username is set. The SMTP connection comes from ``smtp_factory`` (tests, or another transport).

Errors, translated here and nowhere else:

    timeout, connection refused or lost                 NotifyError(retryable=True)
    a 4xx reply (greylisting, mailbox busy, 421)         NotifyError(retryable=True, status=code)
    a 5xx reply (bad login, unknown recipient, ...)      NotifyError(retryable=False, status=code)
    STARTTLS or AUTH not offered, certificate refused   NotifyError(retryable=False)

A message that some recipients took and others refused is sent: the refusals are logged, not raised,
because a retry would send it again to those who have it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING

from alerts.interfaces import NotifyError
from alerts.model import Notification
from alerts.notifiers.jsonhttp import cut

if TYPE_CHECKING:
    from alerts.notifiers.config import EmailConfig

log = logging.getLogger(__name__)

SmtpFactory = Callable[[str, int, float], smtplib.SMTP]
"""(host, port, timeout_s) -> a connected SMTP client."""

_ID_SAFE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def message_id(notification_id: str, domain: str) -> str:
    """The Message-ID of a notification: the same for every resend of it."""
    if _ID_SAFE.fullmatch(notification_id) and len(notification_id) <= 128:
        return f"<{notification_id}.parkwatch@{domain}>"
    return f"<{hashlib.sha256(notification_id.encode()).hexdigest()[:40]}.parkwatch@{domain}>"


class EmailNotifier:
    """Mails each notification to the configured recipients."""

    def __init__(
        self,
        config: EmailConfig,
        *,
        smtp_factory: SmtpFactory | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = config.name
        self._config = config
        self._factory = smtp_factory
        self._ssl_context = ssl_context  # None: the system's trusted CAs, loaded at the first send
        self._clock = clock
        self.where = f"e-mail {config.name!r} (smtp://{config.host}:{config.smtp_port})"

    def message(self, notification: Notification) -> EmailMessage:
        """The e-mail of one notification."""
        sender = self._config.from_addr
        msg = EmailMessage()
        msg["Subject"] = " ".join(notification.title.split())
        msg["From"] = sender
        msg["To"] = ", ".join(self._config.to)
        msg["Date"] = formatdate(self._clock(), usegmt=True)
        msg["Message-ID"] = message_id(notification.notification_id, sender.rpartition("@")[2])
        msg["X-ParkWatch-Notification-Id"] = " ".join(notification.notification_id.split())
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(notification.text, charset="utf-8")
        return msg

    def send(self, notification: Notification) -> None:
        msg = self.message(notification)
        try:
            refused = self._deliver(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise _translate(exc, self.where) from exc
        if refused:
            log.warning("%s: %s refused %s", self.where, msg["Message-ID"], sorted(refused))

    def _deliver(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        config = self._config
        with self._connect() as smtp:
            if config.starttls:
                smtp.starttls(context=self._context())
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password.get_secret_value())
            return smtp.send_message(msg)

    def _connect(self) -> smtplib.SMTP:
        config = self._config
        if self._factory is not None:
            return self._factory(config.host, config.smtp_port, config.timeout_s)
        if config.ssl:
            return smtplib.SMTP_SSL(config.host, config.smtp_port, timeout=config.timeout_s, context=self._context())
        return smtplib.SMTP(config.host, config.smtp_port, timeout=config.timeout_s)

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context


def _translate(exc: smtplib.SMTPException | OSError, where: str) -> NotifyError:
    """The NotifyError that an smtplib or socket error means (see the module docstring)."""
    if isinstance(exc, smtplib.SMTPException):  # a subclass of OSError: first
        return _smtp_error(exc, where)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return NotifyError(f"{where}: TLS certificate refused ({exc.verify_message})", retryable=False)
    if isinstance(exc, TimeoutError):
        return NotifyError(f"{where}: timed out", retryable=True)
    return NotifyError(f"{where}: unreachable ({type(exc).__name__}: {cut(str(exc))})", retryable=True)


def _smtp_error(exc: smtplib.SMTPException, where: str) -> NotifyError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refusals = exc.recipients.items()
        detail = cut("; ".join(f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in refusals))
        retryable = any(_transient(code) for code, _ in exc.recipients.values())
        return NotifyError(f"{where}: all recipients refused ({detail})", retryable=retryable)
    if isinstance(exc, smtplib.SMTPResponseException):  # login refused, sender refused, data refused, ...
        code, detail = exc.smtp_code, cut(_text(exc.smtp_error))
        return NotifyError(f"{where}: SMTP {code} {detail}", retryable=_transient(code), status=code)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return NotifyError(f"{where}: connection lost ({exc})", retryable=True)
    # STARTTLS or AUTH not offered, no AUTH method in common, ...: the server will not change its mind.
    return NotifyError(f"{where}: {cut(str(exc))}", retryable=False)


def _transient(code: int) -> bool:
    """4xx replies (and a reply with no code) are worth another try; 5xx are not."""
    return not 500 <= code < 600


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
