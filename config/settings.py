"""The configuration schema: TOML, validated once at start-up.

Unknown keys are errors (a typo must not be silently ignored). A bad configuration raises ``ConfigError``
naming the dotted key and the bad value, and the service refuses to start. Environment variables
override the file: PARKWATCH_MQTT_URL, PARKWATCH_STORE_URL, PARKWATCH_PARK_ID, PARKWATCH_INFLUXDB_TOKEN,
PARKWATCH_MQTT_PASSWORD, PARKWATCH_INFLUXDB_PASSWORD. Secrets (`[mqtt] password`, `[store] token`,
`[store] password`) may also come from files (`password_file`, `token_file`), read here once; they are
SecretStr, so no repr or dump shows them, and a URL in a repr shows no password.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from alerts.notifiers.config import NotifierConfig
from alerts.render import Templates
from alerts.routing import Route, Silence
from ingest.errors import ConfigError
from ingest.models import DEVICE_ID
from ingest.security import read_secret_file, redact_url

ENV_OVERRIDES = {
    "PARKWATCH_MQTT_URL": ("mqtt", "url"),
    "PARKWATCH_STORE_URL": ("store", "url"),
    "PARKWATCH_PARK_ID": ("park", "id"),
    "PARKWATCH_INFLUXDB_TOKEN": ("store", "token"),
    "PARKWATCH_MQTT_PASSWORD": ("mqtt", "password"),
    "PARKWATCH_INFLUXDB_PASSWORD": ("store", "password"),
}
# A secret and the file it may be read from: [section] key and key_file (an environment variable for the key
# overrides both).
SECRET_FILES = (("mqtt", "password"), ("store", "token"), ("store", "password"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """A `url` shows without its password (secrets themselves are SecretStr or not in the repr)."""
        for key, value in super().__repr_args__():
            yield key, redact_url(value) if key == "url" and isinstance(value, str) else value


class ParkSection(_Section):
    id: str = "demo"
    timezone: str = "Asia/Shanghai"
    stations: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not DEVICE_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not 1 to 64 letters, digits, '-' or '_'")
        return value

    @field_validator("stations", "gates")
    @classmethod
    def _ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not DEVICE_ID.fullmatch(v)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a device id (1 to 64 letters, digits, '-' or '_')")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class MqttSection(_Section):
    url: str | None = None  # None: the embedded broker
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None  # or in the URL, or PARKWATCH_MQTT_PASSWORD
    password_file: str | None = None  # read once at start-up; a trailing newline is not part of the password
    ca_file: str | None = None  # TLS (mqtts://): the CA of the broker's certificate; none: the system's CAs
    cert_file: str | None = None
    key_file: str | None = None
    protocol: Literal[5, 4] = 5
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    receive_maximum: int = Field(default=10000, ge=1, le=65535)
    session_expiry_s: int = Field(default=7 * 86400, ge=0)
    # "all": every device of the park; "listed": only [park] stations and gates, for a static split of the
    # park between instances (each with its own client_id and data_dir; see README, Scale-out)
    subscribe: Literal["all", "listed"] = "all"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_mqtt_url(value)
        return value


class StoreSection(_Section):
    url: str | None = None  # None: sqlite in the data directory
    token: SecretStr | None = None  # influxdb://: the API token; or PARKWATCH_INFLUXDB_TOKEN
    token_file: str | None = None  # read once at start-up; a trailing newline is not part of the token
    username: str | None = None  # influxdb1://: the user, unless store.url carries one
    password: SecretStr | None = None  # influxdb1://: with username; or PARKWATCH_INFLUXDB_PASSWORD
    password_file: str | None = None  # read once at start-up; a trailing newline is not part of the password
    ca_file: str | None = None  # influxdbs://, influxdb1s://: the CA of the server's certificate; none: the system's
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=3600)
    flush_idle_s: float = Field(default=0.2, ge=0, le=3600)  # a partial batch also goes once nothing came for this long
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_cap_s: float = Field(default=30.0, gt=0)
    # "process": the drainer (spool -> store) in a process of its own (ingest/drain_process.py), off the GIL
    # that the rules and the alerts need; "thread": in the service's process
    drainer: Literal["process", "thread"] = "process"


class SpoolSection(_Section):
    synchronous: Literal["full", "normal"] = "full"
    dedup_window_h: float = Field(default=48.0, gt=0)
    shutdown_drain_s: float = Field(default=10.0, ge=0)


class IngestSection(_Section):
    max_payload_bytes: int = Field(default=65536, ge=64, le=16 * 1024 * 1024)
    max_clock_skew_s: float = Field(default=600.0, ge=0)
    # 250, not 5,000: under live load a message waits for the batch before it and for its own, so a large
    # batch held back alerts (benchmark at 5,000 readings/s: p99 227 -> 133 ms) while the backlog rate
    # barely moved (JSON 7,393 -> 7,039 readings/s, single runs)
    max_batch: int = Field(default=250, ge=1, le=100_000)
    # while this many messages wait (a backlog), batches of this size: fewer fsyncs and hand-overs per
    # message (benchmark, 200,000-reading backlog, medians of 3 runs: JSON 21,793 -> 23,345 readings/s, HJ 212
    # 15,547 -> 15,864); equal to max_batch: off
    backlog_batch: int = Field(default=1000, ge=1, le=100_000)
    linger_ms: float = Field(default=5.0, ge=0, le=1000)
    # "process": receive, decode and keep in an ingest worker process of its own (ingest/worker.py), so the
    # service uses two cores; "thread": all in the service's process.
    worker: Literal["process", "thread"] = "process"

    @field_validator("backlog_batch")
    @classmethod
    def _backlog_batch(cls, value: int, info: ValidationInfo) -> int:
        live = info.data.get("max_batch")  # absent when max_batch itself was refused
        if live is not None and value < live:
            raise ValueError(f"{value} is smaller than max_batch ({live}): a backlog's batches are at least as "
                             "large as live ones (equal turns them off)")
        return value


class GatewaySection(_Section):
    """The HJ 212 TCP gateway: data loggers connect here; frames go to park/{park}/air/{station}/hj212."""

    enabled: bool = False  # also run it inside `parkwatch run`
    listen: str = "127.0.0.1:9212"  # host:port
    stations: dict[str, str] = Field(default_factory=dict)  # MN -> station id
    unknown_mn: Literal["reject", "use_mn"] = "reject"  # use_mn: an MN that is a valid device id is the station
    max_connections: int = Field(default=1000, ge=1)
    idle_timeout_s: float = Field(default=600.0, gt=0)
    publish_timeout_s: float = Field(default=10.0, gt=0)
    # Accept frames whose length field also counts the CRC and CR LF (a common logger variant). They are
    # forwarded as received: list those stations in hj212.lenient_length_stations for the service too.
    lenient_length: bool = False

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
            raise ValueError(f"{value!r} is not host:port")
        return value

    @field_validator("stations")
    @classmethod
    def _stations(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [s for s in value.values() if not DEVICE_ID.fullmatch(s)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a device id (1 to 64 letters, digits, '-' or '_')")
        return value


class Hj212Section(_Section):
    factors: dict[str, str] = Field(default_factory=dict)  # vendor factor code -> reading name
    vendor_aliases: bool = True  # PM25, SO2, TEM, WS, ... as in domain.md §1.8
    lenient_length_stations: tuple[str, ...] = ()
    gateway: GatewaySection = GatewaySection()


class RulesSection(_Section):
    file: str | None = None  # the rules file (see config/rules.example.toml); none: no rules
    tick_s: float = Field(default=5.0, gt=0, le=3600)  # how often time-driven rules (silence) are checked
    save_every_s: float = Field(default=30.0, gt=0)  # how often rule state is saved for a restart


class AlertsSection(_Section):
    """Channels (notifiers), routes, silences and message templates; see config/parkwatch.example.toml."""

    tick_s: float = Field(default=5.0, gt=0, le=3600)  # how often reminders and escalations are checked
    templates: Templates = Templates()
    channel: tuple[NotifierConfig, ...] = ()
    route: tuple[Route, ...] = ()
    silence: tuple[Silence, ...] = ()

    @field_validator("channel")
    @classmethod
    def _names(cls, value: tuple[NotifierConfig, ...]) -> tuple[NotifierConfig, ...]:
        names = [c.name for c in value]
        taken = sorted({n for n in names if names.count(n) > 1} | ({"store"} & set(names)))
        if taken:
            raise ValueError(f"channel names must be unique and not 'store': {', '.join(taken)}")
        return value

    @model_validator(mode="after")
    def _routes_name_channels(self) -> AlertsSection:
        known = {c.name for c in self.channel} | {"mqtt", "store"}
        for route in self.route:
            missing = sorted((set(route.channels) | set(route.escalate_to)) - known)
            if missing:
                raise ValueError(f"a route names channel(s) not configured: {', '.join(missing)}")
        return self


class EmbeddedSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1884, ge=1, le=65535)


class LogSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False


class HttpSection(_Section):
    """The operations endpoint: /healthz, /metrics, /api/alerts, /api/vehicles (ingest/http_api.py)."""

    enabled: bool = True
    listen: str = "127.0.0.1:9812"  # host:port; loopback by default (read-only, but not for the whole network)
    spool_limit: int = Field(default=1_000_000, ge=1)  # more messages than this in the spool: /healthz says 503

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
            raise ValueError(f"{value!r} is not host:port")
        return value


class Settings(_Section):
    data_dir: str = "parkwatch-data"
    park: ParkSection = ParkSection()
    mqtt: MqttSection = MqttSection()
    store: StoreSection = StoreSection()
    spool: SpoolSection = SpoolSection()
    ingest: IngestSection = IngestSection()
    hj212: Hj212Section = Hj212Section()
    rules: RulesSection = RulesSection()
    alerts: AlertsSection = AlertsSection()
    embedded: EmbeddedSection = EmbeddedSection()
    log: LogSection = LogSection()
    http: HttpSection = HttpSection()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def embedded_broker(self) -> bool:
        return self.mqtt.url is None

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite://{(self.data_path / 'store.db').resolve()}"


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, override from the environment, validate. Raises ConfigError naming the key."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("(file)", f"{path} is not valid TOML: {exc}") from exc
        _beside(raw, path.parent)
    return settings_from_dict(raw, os.environ if env is None else env)


def _beside(raw: dict[str, Any], folder: Path) -> None:
    """A relative rules file is found next to the configuration file that names it."""
    rules = raw.get("rules")
    if isinstance(rules, dict) and isinstance(rules.get("file"), str) and not Path(rules["file"]).is_absolute():
        rules["file"] = str(folder / rules["file"])


def settings_from_dict(raw: dict[str, Any], env: Mapping[str, str]) -> Settings:
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            raw.setdefault(section, {})
            if isinstance(raw[section], dict):
                raw[section][key] = env[var]
                if (section, key) in SECRET_FILES:
                    raw[section].pop(f"{key}_file", None)
    try:
        return _with_secret_files(Settings.model_validate(raw))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        value = error.get("input")
        secret = "password" in key or "token" in key or (isinstance(value, str) and "@" in value)
        shown = "" if secret or isinstance(value, dict) else f" (got {value!r})"
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"] + shown
        raise ConfigError(key, reason) from None


def _with_secret_files(settings: Settings) -> Settings:
    """Read `password_file` and `token_file` into `password` and `token`; ConfigError naming the key."""
    updates: dict[str, Any] = {}
    for section, key in SECRET_FILES:
        part = getattr(settings, section)
        path = getattr(part, f"{key}_file")
        if path is None:
            continue
        if getattr(part, key) is not None:
            raise ConfigError(f"{section}.{key}_file", f"give {section}.{key} or {section}.{key}_file, not both")
        secret = SecretStr(read_secret_file(path, f"{section}.{key}_file"))
        updates[section] = part.model_copy(update={key: secret})
    return settings.model_copy(update=updates) if updates else settings


def revealed(secret: SecretStr | None) -> str | None:
    """The text of a secret setting, for the one place that hands it to a client; None if not set."""
    return secret.get_secret_value() if secret is not None else None


def parse_mqtt_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """`mqtt://[user:password@]host:port` or `mqtts://...` -> (host, port, tls, user, password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ValueError("has an invalid port") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, parts.scheme == "mqtts", user, password
