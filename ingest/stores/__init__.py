"""Stores, one module per backend, registered by the URL scheme of ``[store] url``.

    sqlite:///var/lib/parkwatch/data.db         SqliteStore, absolute path /var/lib/parkwatch/data.db
    sqlite:///./data/parkwatch.db               relative to the working directory (also sqlite:data/x.db)
    influxdb://host:8086?org=ORG&bucket=BKT     InfluxDB2Store, the v2 write API; token from the argument
    influxdbs://...                             the same over HTTPS
    influxdb1://[user:password@]host:8086/DB    InfluxDB1Store, the 1.x API; user and password URL-encoded,
                                                or given apart ([store] username, password or password_file)
    influxdb1s://...                            the same over HTTPS

The port defaults to 8086. Over HTTPS the server's certificate is checked against ``ca_file`` (or the
system's CAs) and its host name, TLS 1.2 or later. Building a store does no network I/O (it reads the CA
file): a wrong host shows at the first write.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from ingest.errors import ConfigError
from ingest.interfaces import Store
from ingest.security import client_tls_context, redact_url
from ingest.stores.influxdb1 import InfluxDB1Store
from ingest.stores.sqlite import SqliteStore

if TYPE_CHECKING:
    from ingest.stores.influxdb2 import InfluxDB2Store

__all__ = ["STORES", "InfluxDB1Store", "InfluxDB2Store", "SqliteStore", "influxdb1_credentials", "store_from_url"]

KEY = "store.url"
DEFAULT_INFLUXDB_PORT = 8086


def store_from_url(
    url: str,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 10.0,
    ca_file: str | None = None,
) -> Store:
    """The store that `url` names (see the module docstring); ConfigError("store.url", ...) if malformed.

    `ca_file` is for the HTTPS schemes only (a ConfigError naming store.ca_file otherwise); `username` and
    `password` for influxdb1:// only, and only where the URL carries none (`influxdb1_credentials`).
    """
    try:
        parts = urlsplit(url)
        factory = STORES.get(parts.scheme)
        if factory is None:
            known = ", ".join(f"{s}://" for s in STORES)
            raise _MalformedUrlError(f"unknown scheme {parts.scheme!r} (known: {known})")
        tls = _tls(parts.scheme, ca_file)
        credentials = influxdb1_credentials(url, username, password)
        return factory(parts, token=token, timeout_s=timeout_s, tls=tls, credentials=credentials)
    except ValueError as exc:  # from urlsplit or a factory; the text holds no password
        raise ConfigError(KEY, f"{redact_url(url)!r}: {exc}") from exc


@dataclass(frozen=True)
class StoreFactory:
    """Builds the store of `[store]` (`store_from_url`'s arguments, kept): in the service's process, and in
    the drainer's, which gets it pickled (ingest/drain_process.py). The secrets stay out of its repr."""

    url: str
    token: str | None = field(repr=False)
    username: str | None
    password: str | None = field(repr=False)
    timeout_s: float
    ca_file: str | None

    def __call__(self) -> Store:
        return store_from_url(self.url, token=self.token, username=self.username, password=self.password,
                              timeout_s=self.timeout_s, ca_file=self.ca_file)


def influxdb1_credentials(url: str, username: str | None, password: str | None) -> tuple[str | None, str | None]:
    """The user and password of an influxdb1:// store: from the URL, or from [store] username and password
    (a password file or PARKWATCH_INFLUXDB_PASSWORD ends up there), never half from each.

    ConfigError naming store.username or store.password for credentials a scheme does not take, given
    twice, or a password without a user.
    """
    parts = urlsplit(url)
    in_url_user = unquote(parts.username) if parts.username is not None else None
    in_url_password = unquote(parts.password) if parts.password is not None else None
    if username is None and password is None:
        return in_url_user, in_url_password
    key = "store.username" if username is not None else "store.password"
    if parts.scheme not in INFLUXDB1_SCHEMES:
        raise ConfigError(key, "is for influxdb1:// stores (influxdb:// takes a token)")
    if in_url_user is not None or in_url_password is not None:
        raise ConfigError(key, "store.url carries a user already: give the credentials in one place")
    if username is None:
        raise ConfigError("store.password", "needs a user: store.username")
    return username, password


INFLUXDB1_SCHEMES = frozenset({"influxdb1", "influxdb1s"})
HTTPS_SCHEMES = frozenset({"influxdbs", "influxdb1s"})


def _tls(scheme: str, ca_file: str | None) -> ssl.SSLContext | None:
    if scheme in HTTPS_SCHEMES:
        return client_tls_context(ca_file=ca_file, section="store")
    if ca_file is not None:
        raise ConfigError("store.ca_file", f"is only for {', '.join(sorted(HTTPS_SCHEMES))}:// (HTTPS) stores")
    return None


_Credentials = tuple[str | None, str | None]


def __getattr__(name: str) -> Any:
    """`InfluxDB2Store` is imported when first asked for: influxdb-client (and the numpy it imports) took
    26 MB of every service's memory, and only influxdb:// needs it."""
    if name == "InfluxDB2Store":
        from ingest.stores.influxdb2 import InfluxDB2Store  # noqa: PLC0415

        return InfluxDB2Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _MalformedUrlError(ValueError):
    """What is wrong with a store URL; store_from_url adds the (redacted) URL."""


def _sqlite(
    parts: SplitResult, *, token: str | None, timeout_s: float, tls: ssl.SSLContext | None, credentials: _Credentials
) -> Store:
    if parts.netloc or parts.query or parts.fragment:
        raise _MalformedUrlError("a sqlite URL is sqlite:///PATH, with no host, query or fragment")
    path = unquote(parts.path)
    if path.startswith(("/./", "/../")):
        path = path[1:]
    if not path or path.endswith("/"):
        raise _MalformedUrlError("the path of the database file is missing")
    return SqliteStore(Path(path), timeout_s=timeout_s)


def _influxdb2(
    parts: SplitResult, *, token: str | None, timeout_s: float, tls: ssl.SSLContext | None, credentials: _Credentials
) -> Store:
    host, port = _host_port(parts)
    if parts.username is not None or parts.password is not None:
        raise _MalformedUrlError("the v2 API takes a token ([store] token or PARKWATCH_INFLUXDB_TOKEN), not a user")
    if parts.path not in ("", "/") or parts.fragment:
        raise _MalformedUrlError("expected influxdb://host:port?org=ORG&bucket=BUCKET, with no path")
    query = _query(parts, allowed={"org", "bucket"})
    org, bucket = query.get("org"), query.get("bucket")
    if not org or not bucket:
        raise _MalformedUrlError("both org=... and bucket=... are required")
    from ingest.stores.influxdb2 import InfluxDB2Store  # noqa: PLC0415 (see __getattr__)

    scheme = "https" if tls is not None else "http"
    return InfluxDB2Store(f"{scheme}://{_host_part(host)}:{port}", org, bucket, token, timeout_s, tls=tls)


def _influxdb1(
    parts: SplitResult, *, token: str | None, timeout_s: float, tls: ssl.SSLContext | None, credentials: _Credentials
) -> Store:
    host, port = _host_port(parts)
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not database or "/" in database or parts.query or parts.fragment:
        raise _MalformedUrlError("expected influxdb1://[user:password@]host:port/DATABASE")
    username, password = credentials
    return InfluxDB1Store(host, port, database, username, password, timeout_s, tls is not None, tls=tls)


STORES: dict[str, Callable[..., Store]] = {
    "sqlite": _sqlite,
    "influxdb": _influxdb2,
    "influxdbs": _influxdb2,
    "influxdb1": _influxdb1,
    "influxdb1s": _influxdb1,
}


def _host_port(parts: SplitResult) -> tuple[str, int]:
    try:
        port = parts.port
    except ValueError as exc:  # its text may quote part of a password: not used
        raise _MalformedUrlError("the port is not a number from 1 to 65535") from exc
    if port == 0:
        raise _MalformedUrlError("the port is not a number from 1 to 65535")
    if not parts.hostname:
        raise _MalformedUrlError("the host is missing")
    return parts.hostname, port if port is not None else DEFAULT_INFLUXDB_PORT


def _host_part(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _query(parts: SplitResult, *, allowed: set[str]) -> dict[str, str]:
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise _MalformedUrlError(f"unknown parameter(s) {', '.join(unknown)}")
    repeated = sorted(k for k, v in query.items() if len(v) > 1)
    if repeated:
        raise _MalformedUrlError(f"parameter(s) given twice: {', '.join(repeated)}")
    return {k: v[0] for k, v in query.items()}
