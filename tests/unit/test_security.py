"""Security settings: secrets from files and the environment, never shown; one TLS set-up for every client."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.mqtt import AlertLink
from config.cli import main
from config.compose import build, mqtt_settings
from config.settings import settings_from_dict
from ingest.errors import ConfigError
from ingest.hj212_gateway import GatewayPublisher
from ingest.mqtt import MqttSettings, MqttSource, configure_security
from ingest.security import client_tls_context, read_secret_file, redact_url
from ingest.stores import InfluxDB1Store, InfluxDB2Store, store_from_url
from simulators.publish import MqttPublisher
from simulators.recording import Recorder
from tests.conftest import require_binary
from tests.pki import Pki, make_pki, tools_missing

PASSWORD = "broker-s3cret-Pw"
TOKEN = "influx-s3cret-Tk"


def settings(raw: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return settings_from_dict(raw, env or {})


def refused(raw: dict[str, Any], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        build(settings(raw, env))
    return exc.value


def secret_file(tmp_path: Path, text: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if "openssl" in tools_missing():
        require_binary("openssl")  # fails on CI, skips elsewhere
    return make_pki(tmp_path_factory.mktemp("pki"))


class TestSecretFiles:
    def test_password_file_is_read_without_its_trailing_newline(self, tmp_path: Path) -> None:
        """[mqtt] password_file gives the password, without the newline an editor adds."""
        raw = {"mqtt": {"url": "mqtt://h:1", "username": "u", "password_file": secret_file(tmp_path, " p w \r\n")}}
        assert mqtt_settings(settings(raw)).password == " p w "

    def test_token_file_is_read(self, tmp_path: Path) -> None:
        """[store] token_file gives the token."""
        s = settings({"store": {"token_file": secret_file(tmp_path, TOKEN + "\n")}})
        assert s.store.token is not None and s.store.token.get_secret_value() == TOKEN

    @pytest.mark.parametrize("section,key", [("mqtt", "password_file"), ("store", "token_file")])
    def test_a_missing_file_names_the_key(self, tmp_path: Path, section: str, key: str) -> None:
        """A secret file that cannot be read is a configuration error naming the key and the path."""
        with pytest.raises(ConfigError) as exc:
            settings({section: {key: str(tmp_path / "nope")}})
        assert exc.value.key == f"{section}.{key}" and "nope" in exc.value.reason

    def test_a_directory_or_an_empty_file_is_refused(self, tmp_path: Path) -> None:
        """A directory, or a file holding nothing but a newline, is no secret."""
        for path in (str(tmp_path), secret_file(tmp_path, "\n")):
            with pytest.raises(ConfigError) as exc:
                settings({"store": {"token_file": path}})
            assert exc.value.key == "store.token_file"

    def test_the_content_is_never_quoted(self, tmp_path: Path) -> None:
        """An error about a secret file never shows what is in it."""
        path = tmp_path / "binary"
        path.write_bytes(PASSWORD.encode() + b"\xff\xfe")
        with pytest.raises(ConfigError) as exc:
            read_secret_file(path, "mqtt.password_file")
        assert PASSWORD not in str(exc.value)

    def test_password_and_password_file_together_are_refused(self, tmp_path: Path) -> None:
        """Two sources for one secret in the file is ambiguous: refused."""
        with pytest.raises(ConfigError) as exc:
            settings({"mqtt": {"password": "a", "password_file": secret_file(tmp_path, "b")}})
        assert exc.value.key == "mqtt.password_file"

    def test_the_environment_overrides_the_files(self, tmp_path: Path) -> None:
        """PARKWATCH_MQTT_PASSWORD and PARKWATCH_INFLUXDB_TOKEN win over the files (which are not read)."""
        raw = {"mqtt": {"url": "mqtt://h:1", "username": "u", "password_file": str(tmp_path / "absent")},
               "store": {"token_file": str(tmp_path / "absent")}}
        s = settings(raw, {"PARKWATCH_MQTT_PASSWORD": PASSWORD, "PARKWATCH_INFLUXDB_TOKEN": TOKEN})
        assert mqtt_settings(s).password == PASSWORD
        assert s.store.token is not None and s.store.token.get_secret_value() == TOKEN


class TestInfluxDB1Credentials:
    """influxdb1:// takes its user and password from the URL, or from [store] username and password
    (password_file, PARKWATCH_INFLUXDB_PASSWORD), never half from each."""

    def test_the_password_comes_from_a_file(self, tmp_path: Path) -> None:
        raw = {"store": {"url": "influxdb1://h:8086/db", "username": "pw",
                         "password_file": secret_file(tmp_path, PASSWORD + "\n")}}
        s = settings(raw)
        assert s.store.password is not None and s.store.password.get_secret_value() == PASSWORD
        build(s)  # logging in with it: tests/integration/test_stores.py, TestInfluxDB1Authentication

    def test_the_environment_gives_the_password(self) -> None:
        s = settings({"store": {"url": "influxdb1://h:8086/db", "username": "pw"}},
                     {"PARKWATCH_INFLUXDB_PASSWORD": PASSWORD})
        assert s.store.password is not None and s.store.password.get_secret_value() == PASSWORD

    @pytest.mark.parametrize("store,env,key", [
        ({"url": "influxdb1://u:p@h:8086/db", "username": "pw"}, {}, "store.username"),
        ({"url": "influxdb1://u@h:8086/db"}, {"PARKWATCH_INFLUXDB_PASSWORD": "x"}, "store.password"),
        ({"url": "influxdb1://h:8086/db"}, {"PARKWATCH_INFLUXDB_PASSWORD": "x"}, "store.password"),
        ({"url": "influxdb://h:8086?org=o&bucket=b", "username": "pw"}, {}, "store.username"),
        ({"url": "sqlite:///tmp/x.db", "password": "x"}, {}, "store.password"),
    ])
    def test_credentials_given_twice_half_or_to_another_store_are_refused(
        self, store: dict[str, str], env: dict[str, str], key: str
    ) -> None:
        """Refused at start-up with the key named, never silently preferring one of them."""
        assert refused({"store": store}, env).key == key

    def test_a_password_file_with_a_password_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as exc:
            settings({"store": {"password": "a", "password_file": secret_file(tmp_path, "b")}})
        assert exc.value.key == "store.password_file"



class TestSecretsAreNotShown:
    def test_repr_of_the_settings_hides_passwords_tokens_and_url_credentials(self, tmp_path: Path) -> None:
        """No repr of the settings shows a password, a token or the password of a URL."""
        s = settings({"mqtt": {"url": f"mqtts://u:{PASSWORD}x@h:8883", "username": "u", "password": PASSWORD},
                      "store": {"url": f"influxdb1://u:{TOKEN}@h:8086/db",
                                "token_file": secret_file(tmp_path, TOKEN)}})
        for text in (repr(s), str(s), repr(s.mqtt), repr(s.store)):
            assert PASSWORD not in text and TOKEN not in text
        assert "mqtts://u:***@h:8883" in repr(s.mqtt)

    def test_a_dump_of_the_settings_hides_passwords_and_tokens(self, tmp_path: Path) -> None:
        """password and token are SecretStr: a model_dump shows '**********' (a URL is dumped as it is)."""
        s = settings({"mqtt": {"username": "u", "password": PASSWORD},
                      "store": {"token_file": secret_file(tmp_path, TOKEN)}})
        dumped = str(s.model_dump(mode="json"))
        assert PASSWORD not in dumped and TOKEN not in dumped

    def test_repr_of_the_client_settings_hides_the_password(self) -> None:
        """MqttSettings, which every MQTT client gets, has no password in its repr."""
        assert PASSWORD not in repr(MqttSettings(username="u", password=PASSWORD))

    def test_the_store_url_printed_at_start_up_is_redacted(self, tmp_path: Path) -> None:
        """The service's store_url (printed by `parkwatch run`) has no password, even one with an '@'."""
        service = build(settings({"data_dir": str(tmp_path), "mqtt": {"url": "mqtt://u:pw@h:1"},
                                  "store": {"url": f"influxdb1://u:{PASSWORD}@x@h:8086/db"}}))
        assert service.store_url == "influxdb1://u:***@h:8086/db"
        assert service.mqtt_url == "mqtt://h:1"

    def test_a_bad_secret_value_is_not_quoted(self) -> None:
        """A password of the wrong type is refused without repeating it."""
        error = refused({"mqtt": {"password": 123456789}})
        assert error.key == "mqtt.password" and "123456789" not in error.reason


class TestRedactUrl:
    @pytest.mark.parametrize("url,shown", [
        ("mqtt://u:p@h:1883", "mqtt://u:***@h:1883"),
        ("mqtt://u:p@ss/w@h:1883", "mqtt://u:***@h:1883"),
        ("influxdb://h:8086?org=o&token=abc&bucket=b", "influxdb://h:8086?org=o&token=***&bucket=b"),
        ("mqtts://h:8883", "mqtts://h:8883"),
        ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),
    ])
    def test_passwords_and_tokens_are_replaced(self, url: str, shown: str) -> None:
        """user:password@ keeps the user; token=... loses its value; a URL without secrets is unchanged."""
        assert redact_url(url) == shown


class TestClientSettings:
    def test_the_field_wins_over_the_url(self) -> None:
        """username and password fields win over those in the URL."""
        m = mqtt_settings(settings({"mqtt": {"url": "mqtts://a:b@h", "username": "u", "password": "p"}}))
        assert (m.username, m.password, m.tls, m.port, m.url) == ("u", "p", True, 8883, "mqtts://h:8883")

    def test_a_password_without_a_user_name_is_refused(self) -> None:
        """MQTT 3.1.1 has no password without a user name: refused at start-up, not ignored."""
        assert refused({"mqtt": {"url": "mqtt://h:1"}}, {"PARKWATCH_MQTT_PASSWORD": "p"}).key == "mqtt.username"

    def test_tls_files_with_a_plain_url_are_refused(self) -> None:
        """A CA or client certificate with mqtt:// means TLS was meant: refused, not sent in clear."""
        assert refused({"mqtt": {"url": "mqtt://h:1", "ca_file": "/etc/ca.pem"}}).key == "mqtt.url"


class TestTlsContext:
    def test_verifies_the_server_and_its_host_name_with_tls_1_2_or_later(self, pki: Pki) -> None:
        """The context checks the certificate against the CA, checks the host name, and refuses TLS < 1.2."""
        context = client_tls_context(ca_file=str(pki.ca), section="mqtt")
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2

    def test_client_certificate_and_key_are_loaded(self, pki: Pki) -> None:
        """A client certificate with its key is accepted."""
        client_tls_context(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key),
                           section="mqtt")

    @pytest.mark.parametrize("files,key", [
        ({"ca_file": "/nonexistent/ca.pem"}, "mqtt.ca_file"),
        ({"cert_file": "/nonexistent/c.pem", "key_file": None}, "mqtt.cert_file"),
        ({"key_file": "KEY"}, "mqtt.key_file"),
        ({"cert_file": "CA", "key_file": "KEY"}, "mqtt.key_file"),  # a key that is not the certificate's
        ({"cert_file": "CERT", "key_file": "ENCRYPTED"}, "mqtt.key_file"),
    ])
    def test_unusable_files_name_their_key(self, pki: Pki, files: dict[str, str | None], key: str) -> None:
        """A missing CA, a key without a certificate, a mismatched or encrypted key: ConfigError naming the key."""
        names = {"CA": str(pki.ca), "CERT": str(pki.client_cert), "KEY": str(pki.client_key),
                 "ENCRYPTED": str(pki.encrypted_key)}
        given = {"ca_file": str(pki.ca), **{k: names.get(v, v) if v else None for k, v in files.items()}}
        with pytest.raises(ConfigError) as exc:
            client_tls_context(**given, section="mqtt")
        assert exc.value.key == key

    def test_configure_security_sets_tls_and_credentials_on_a_client(self, pki: Pki) -> None:
        """configure_security gives a paho client the user name, the password and TLS."""
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="t")
        configure_security(client, MqttSettings(username="u", password=PASSWORD, tls=True, ca_file=str(pki.ca)))
        assert (client.username, client.password) == ("u", PASSWORD)
        with pytest.raises(ValueError, match="already been configured"):
            client.tls_set_context(ssl.create_default_context())


def _clients() -> dict[str, Callable[[MqttSettings], object]]:
    return {
        "MqttSource": lambda s: MqttSource(s, ["x/#"]),
        "AlertLink": lambda s: AlertLink(s, "demo", lambda *a: None),
        "GatewayPublisher": GatewayPublisher,
        "MqttPublisher (simulate, replay)": lambda s: MqttPublisher(s, client_id="t"),
        "Recorder (record)": lambda s: Recorder(s, ["x/#"], client_id="t"),
    }


class TestEveryClientUsesTheSameSecurity:
    @pytest.mark.parametrize("name", list(_clients()))
    def test_a_bad_ca_file_stops_every_client(self, name: str) -> None:
        """Every MQTT client of ours builds its TLS through configure_security: a bad CA names mqtt.ca_file."""
        with pytest.raises(ConfigError) as exc:
            _clients()[name](MqttSettings(tls=True, ca_file="/nonexistent/ca.pem"))
        assert exc.value.key == "mqtt.ca_file"

    def test_the_ack_command_too(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`parkwatch ack` uses the same set-up: a bad CA file exits 2 naming mqtt.ca_file."""
        config = tmp_path / "c.toml"
        config.write_text('[mqtt]\nurl = "mqtts://127.0.0.1:1"\nca_file = "/nonexistent/ca.pem"\n')
        assert main(["ack", "a1", "--config", str(config)]) == 2
        assert "mqtt.ca_file" in capsys.readouterr().err


class TestStoreTls:
    def test_https_stores_use_the_ca_file(self, pki: Pki) -> None:
        """influxdb1s:// and influxdbs:// build HTTPS stores that trust store.ca_file."""
        one = store_from_url("influxdb1s://h:8086/db", ca_file=str(pki.ca))
        two = store_from_url("influxdbs://h:8086?org=o&bucket=b", token=TOKEN, ca_file=str(pki.ca))
        assert isinstance(one, InfluxDB1Store) and one.base_url == "https://h:8086"
        assert isinstance(two, InfluxDB2Store) and two.url == "https://h:8086"

    def test_a_ca_file_for_a_plain_store_is_refused(self) -> None:
        """store.ca_file with an http:// or sqlite store is a mistake: refused, naming the key."""
        assert refused({"store": {"url": "influxdb1://h:8086/db", "ca_file": "/etc/ca.pem"}}).key == "store.ca_file"

    def test_a_missing_ca_file_is_refused(self) -> None:
        """An HTTPS store with a CA file that is not there is refused at start-up."""
        assert refused({"store": {"url": "influxdb1s://h:8086/db", "ca_file": "/nonexistent"}}).key == "store.ca_file"
