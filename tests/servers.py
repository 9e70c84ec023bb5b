"""Real servers for integration tests: mosquitto, InfluxDB 1.x and VictoriaMetrics.

Each server runs from its Debian binary on a free loopback port, with its configuration, data and log in
a working directory of its own, and is stopped by the process it started (SIGTERM, then SIGKILL).
`stop()` keeps the data, so `start()` (or `restart()`) brings the same server back on the same port.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
START_ATTEMPTS = 3  # a restart on the same port may race the kernel releasing it: try again briefly


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def binary_available(name: str) -> bool:
    """Whether the server binary `name` is on the PATH (or in /usr/sbin, where Debian puts mosquitto)."""
    return _which(name) is not None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


@dataclass(frozen=True)
class TlsFiles:
    """HTTPS for a server: its certificate and key, and the CA that the tests' own requests trust."""

    cert: Path
    key: Path
    ca: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def http_get(url: str, *, timeout_s: float = 5.0, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """GET `url`: (status, body), also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_form(
    url: str, form: dict[str, str], *, timeout_s: float = 10.0, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    """POST an url-encoded form: (status, body), also for 4xx/5xx answers."""
    data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ServerStartError(RuntimeError):
    """A server did not become ready; the message ends with the tail of its log."""


class _ServerProcess:
    """One server process: configuration, start with readiness check, stop, restart, log tail.

    Subclasses name the binary, write their configuration in `_prepare` and say when they are ready.
    """

    binary: str = ""

    def __init__(self, workdir: Path, *, port: int | None = None, tls: TlsFiles | None = None) -> None:
        self.workdir = Path(workdir)
        self._port = port if port is not None else free_port()
        self.tls = tls  # HTTPS instead of HTTP, for the servers that speak HTTP
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.binary}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and wait until it serves; ServerStartError with the log tail if it does not."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        for attempt in range(1, START_ATTEMPTS + 1):
            self._spawn()
            if self._wait_ready(last_attempt=attempt == START_ATTEMPTS):
                return
            time.sleep(0.5 * attempt)

    def stop(self) -> None:
        """SIGTERM and wait, so the server saves its data; SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log()

    def restart(self) -> None:
        """Stop and start again: same port, same data."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _prepare(self) -> None:
        """Write configuration files and create data directories."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _executable(self) -> str:
        path = _which(self.binary)
        if path is None:
            raise ServerStartError(f"{self.binary} is not installed (apt-get install {self.binary})")
        return path

    def _spawn(self) -> None:
        self._close_log()
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [self._executable(), *self._command()],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def _wait_ready(self, *, last_attempt: bool) -> bool:
        """True once ready; False if the process died and may be tried again; raises on a timeout."""
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return self._died(last_attempt)
            if self._ready():
                return True
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(self._failure(f"not ready within {START_TIMEOUT_S:.0f} s"))

    def _died(self, last_attempt: bool) -> bool:
        assert self._proc is not None
        code = self._proc.returncode
        self._proc = None
        self._close_log()
        if last_attempt:
            raise ServerStartError(self._failure(f"exited with status {code} during start-up"))
        return False

    def _failure(self, what: str) -> str:
        return f"{self.binary} on {HOST}:{self.port} {what}; log {self.log_path}:\n{self.log_tail()}"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def _scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def _client_context(self) -> ssl.SSLContext | None:
        return self.tls.client_context() if self.tls is not None else None

    def _http_ok(self, path: str, status: int) -> bool:
        try:
            return http_get(f"{self._scheme}://{HOST}:{self.port}{path}", timeout_s=1.0,
                            context=self._client_context())[0] == status
        except OSError:
            return False


class MosquittoServer(_ServerProcess):
    """A mosquitto broker on 127.0.0.1 with unlimited queues and, by default, persistence on disk.

    `listener_conf` lines go right after the listener line, so they configure that listener (TLS: cafile,
    certfile, keyfile, require_certificate, ...); `anonymous=False` refuses clients without a user name
    (give a `password_file` in `extra_conf`); `extra_conf` lines go at the end.
    """

    binary = "mosquitto"

    def __init__(
        self, workdir: Path, *, port: int | None = None, persistence: bool = True, extra_conf: str = "",
        listener_conf: str = "", anonymous: bool = True,
    ) -> None:
        super().__init__(workdir, port=port)
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.listener_conf = listener_conf
        self.anonymous = anonymous

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def _prepare(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            self.listener_conf,
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            # Root would otherwise drop to the `mosquitto` user, who cannot write the temporary directory.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "max_queued_messages 0",  # no limit: the default (1000) silently drops QoS 1 messages
            "max_inflight_messages 0",
            "log_dest stderr",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if self.persistence:
            data = self.workdir / "data"
            data.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {data}/"]
        self.config_path.write_text("\n".join([*lines, self.extra_conf, ""]))

    def _command(self) -> list[str]:
        return ["-c", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5):
                return True
        except OSError:
            return False


class InfluxDB1Server(_ServerProcess):
    """InfluxDB 1.x (`influxd`) with its HTTP API on 127.0.0.1, data in `workdir`.

    With `tls`, the API speaks HTTPS only (`https-enabled`), and `url_for` gives influxdb1s:// URLs.
    With `admin` (user, password), authentication is on and that admin user is created at the first start;
    this helper's own queries then log in as it.
    """

    binary = "influxd"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        rpc_port: int | None = None,
        tls: TlsFiles | None = None,
        admin: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, port=port, tls=tls)
        self.rpc_port = rpc_port if rpc_port is not None else free_port()
        self.admin = admin
        self._admin_created = False

    def start(self) -> None:
        super().start()
        if self.admin is not None and not self._admin_created:
            user, password = self.admin
            query = f"CREATE USER \"{_influxql_ident(user)}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
            status, body = http_post_form(f"{self.base_url}/query", {"q": query}, context=self._client_context())
            if status != 200 or b'"error"' in body:
                raise RuntimeError(f"cannot create the InfluxDB admin user ({status}): {body.decode(errors='replace')}")
            self._admin_created = True

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://{HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "influxdb.conf"

    def url_for(self, db: str) -> str:
        """The `[store] url` of database `db` on this server."""
        scheme = "influxdb1s" if self.tls is not None else "influxdb1"
        return f"{scheme}://{HOST}:{self.port}/{urllib.parse.quote(db, safe='')}"

    def create_database(self, name: str) -> None:
        self.execute(f'CREATE DATABASE "{_influxql_ident(name)}"')

    def execute(self, influxql: str, db: str = "") -> None:
        """Run a statement that changes something (CREATE, DROP, DELETE): POST /query."""
        result = self._query_json(db, influxql, post=True)["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxQL error: {result['error']}")

    def query(self, db: str, influxql: str) -> list[dict[str, Any]]:
        """Rows of the first statement's result (every series), as dicts; times in ns since the epoch.

        A row of a grouped series also carries that series' tags.
        """
        result = self._query_json(db, influxql)["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxQL error: {result['error']}")
        return [row for series in result.get("series", []) for row in _series_rows(series)]

    def count(self, db: str, measurement: str) -> int:
        """The exact number of points in `measurement` (each distinct series and time counts once)."""
        return len(self.query(db, f'SELECT * FROM "{_influxql_ident(measurement)}"'))

    def _query_json(self, db: str, influxql: str, *, post: bool = False) -> dict[str, Any]:
        form = {"db": db, "q": influxql, "epoch": "ns"}
        # influxd reads credentials from the URL's query (or a header), never from a form body
        login = "" if self.admin is None else "?" + urllib.parse.urlencode({"u": self.admin[0], "p": self.admin[1]})
        if post:
            status, body = http_post_form(f"{self.base_url}/query{login}", form, context=self._client_context())
        else:
            query = urllib.parse.urlencode(form) + ("&" + login[1:] if login else "")
            status, body = http_get(f"{self.base_url}/query?{query}", timeout_s=30, context=self._client_context())
        if status != 200:
            raise RuntimeError(f"InfluxDB query failed ({status}): {body.decode(errors='replace')}")
        parsed: dict[str, Any] = json.loads(body)
        return parsed

    def _prepare(self) -> None:
        for sub in ("meta", "data", "wal"):
            (self.workdir / sub).mkdir(exist_ok=True)
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        w = self.workdir
        return f"""\
reporting-disabled = true
bind-address = "{HOST}:{self.rpc_port}"

[meta]
  dir = "{w / "meta"}"
  logging-enabled = false

[data]
  dir = "{w / "data"}"
  wal-dir = "{w / "wal"}"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "{HOST}:{self.port}"
  auth-enabled = {"true" if self.admin is not None else "false"}
  log-enabled = false
  max-row-limit = 0
{self._https_config()}

[monitor]
  store-enabled = false

[continuous_queries]
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""

    def _https_config(self) -> str:
        if self.tls is None:
            return ""
        return (f'  https-enabled = true\n  https-certificate = "{self.tls.cert}"\n'
                f'  https-private-key = "{self.tls.key}"')

    def _command(self) -> list[str]:
        return ["-config", str(self.config_path)]

    def _ready(self) -> bool:
        return self._http_ok("/ping", 204)


class VictoriaMetricsServer(_ServerProcess):
    """VictoriaMetrics on 127.0.0.1: a server of the InfluxDB v2 write API, for the `influxdb://` store.

    With `tls`, it speaks HTTPS only, and `url` is an influxdbs:// URL.
    """

    binary = "victoria-metrics"

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The `[store] url` for this server (org and bucket are ignored by VictoriaMetrics)."""
        scheme = "influxdbs" if self.tls is not None else "influxdb"
        return f"{scheme}://{HOST}:{self.port}?org=parkwatch&bucket=parkwatch"

    def export(self, match: str, *, min_series: int = 1, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Every series matching the selector `match`: dicts with metric, values and timestamps (ms).

        The first series written reaches the index about half a second after its write, even after a
        force_flush: ask again until at least `min_series` series are there or `timeout_s` has passed.
        Pass min_series=0 to look once (to check that nothing matches).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            series = self._export_once(match)
            if len(series) >= min_series or time.monotonic() > deadline:
                return series
            time.sleep(0.1)

    def _export_once(self, match: str) -> list[dict[str, Any]]:
        self.flush()
        query = urllib.parse.urlencode({"match[]": match})
        status, body = http_get(f"{self.base_url}/api/v1/export?{query}", timeout_s=30, context=self._client_context())
        if status != 200:
            raise RuntimeError(f"VictoriaMetrics export failed ({status}): {body.decode(errors='replace')}")
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def flush(self) -> None:
        """Make everything written so far visible to searches at once."""
        status, body = http_get(f"{self.base_url}/internal/force_flush", context=self._client_context())
        if status != 200:
            raise RuntimeError(f"VictoriaMetrics force_flush failed ({status}): {body!r}")

    def _prepare(self) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)

    def _command(self) -> list[str]:
        return [
            f"-httpListenAddr={HOST}:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1ms",
            "-loggerLevel=WARN",
            *(["-tls", f"-tlsCertFile={self.tls.cert}", f"-tlsKeyFile={self.tls.key}"] if self.tls else []),
        ]

    def _ready(self) -> bool:
        return self._http_ok("/health", 200)


def _influxql_ident(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _series_rows(series: dict[str, Any]) -> list[dict[str, Any]]:
    tags: dict[str, Any] = series.get("tags", {})
    columns: list[str] = series["columns"]
    return [{**tags, **dict(zip(columns, values, strict=True))} for values in series.get("values", [])]
