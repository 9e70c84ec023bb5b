"""Secrets and TLS, in one place: secret files, the client side of TLS, and URLs made safe to log.

- ``read_secret_file``: a password or token kept in a file of its own (a Docker or systemd secret); a
  trailing newline is not part of it. An unreadable or empty file is a ConfigError naming the key; the
  content is never quoted.
- ``client_tls_context``: what every TLS client of ours uses (MQTT and HTTPS stores): the server's
  certificate checked against ``ca_file`` (or the system's CAs) and its host name, TLS 1.2 or later, and
  the client certificate when one is configured. A file that cannot be used is a ConfigError naming the key.
- ``redact_url``: a URL with its ``user:password@`` and any ``token=`` parameter replaced by ``***``.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path

from ingest.errors import ConfigError

__all__ = ["client_tls_context", "read_secret_file", "redact_url"]


def read_secret_file(path: str | Path, key: str) -> str:
    """The secret in `path` without its trailing newline; ConfigError(key, ...) if it cannot be had."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"{path} is not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(key, f"{path} is empty")
    return secret


def client_tls_context(
    *, ca_file: str | None, cert_file: str | None = None, key_file: str | None = None, section: str
) -> ssl.SSLContext:
    """A TLS client context (see the module docstring); errors name `section`.ca_file, .cert_file, .key_file."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:  # SSLError is an OSError; both named for the reader
        raise ConfigError(f"{section}.ca_file", f"cannot use {ca_file}: {_why(exc)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if key_file is not None and cert_file is None:
        raise ConfigError(f"{section}.key_file", f"needs {section}.cert_file (the client certificate)")
    if cert_file is not None:
        _load_client_certificate(context, cert_file, key_file, section)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert_file: str, key_file: str | None, section: str) -> None:
    key = f"{section}.key_file" if key_file is not None else f"{section}.cert_file"
    for path, name in ((cert_file, f"{section}.cert_file"), (key_file, key)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(name, f"cannot read {path}: no such file")
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_passphrase(key))
    except _EncryptedKeyError:
        raise ConfigError(key, "the private key is encrypted; give an unencrypted key file (mode 0600)") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(key, f"{cert_file} and {key_file or cert_file} are not a certificate and its "
                               f"private key in PEM ({_why(exc)})") from None


class _EncryptedKeyError(Exception):
    """OpenSSL asked for a passphrase: without this, it would prompt on the terminal."""


def _no_passphrase(key: str) -> Callable[[], str]:
    def refuse() -> str:
        raise _EncryptedKeyError(key)

    return refuse


def _why(exc: OSError) -> str:
    return exc.strerror if isinstance(exc.strerror, str) and exc.strerror else str(exc)


def redact_url(url: str) -> str:
    """`url` with anything that may be a secret (user:password@, token=...) replaced by ***."""
    return _TOKEN.sub(r"\1***", _PASSWORD.sub(r"\1\2:***@", url))


# The user stays; from the first ':' after it to the LAST '@': a password may hold an unencoded '@' or '/'.
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^:@/]*):.*@", re.DOTALL)
_TOKEN = re.compile(r"([?&](?:token|access_token|password|secret|key)=)[^&#]*", re.IGNORECASE)
