"""Configuration: validated once at start-up; a bad one names the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.cli import main
from config.compose import build
from config.settings import load_settings, settings_from_dict
from ingest.errors import ConfigError


def bad(raw: dict[str, object], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        build(settings_from_dict(raw, env or {}))
    return exc.value


class TestDefaults:
    def test_no_configuration_means_embedded_broker_and_sqlite(self) -> None:
        """With nothing configured the service runs on the embedded broker and a local SQLite store."""
        settings = load_settings(None, env={})
        assert settings.embedded_broker
        assert settings.store_url.startswith("sqlite:///") and settings.store_url.endswith("store.db")

    def test_environment_overrides_the_file(self, tmp_path: Path) -> None:
        """PARKWATCH_* variables win over the file's values."""
        path = tmp_path / "c.toml"
        path.write_text('[park]\nid = "a"\n[mqtt]\nurl = "mqtt://h:1"\n')
        env = {"PARKWATCH_PARK_ID": "b", "PARKWATCH_MQTT_URL": "mqtt://x:2",
               "PARKWATCH_STORE_URL": "influxdb://db:8086?org=o&bucket=b", "PARKWATCH_INFLUXDB_TOKEN": "t"}
        settings = load_settings(path, env=env)
        assert (settings.park.id, settings.mqtt.url) == ("b", "mqtt://x:2")
        assert settings.store.token is not None and settings.store.token.get_secret_value() == "t"
        assert settings.store_url == "influxdb://db:8086?org=o&bucket=b"


class TestRefusal:
    def test_unknown_key_is_named(self) -> None:
        """A misspelt key is an error naming it, not silently ignored."""
        assert bad({"mqtt": {"urll": "mqtt://h"}}).key == "mqtt.urll"

    def test_bad_value_names_key_and_value(self) -> None:
        """A value of the wrong shape names the key and shows the value."""
        error = bad({"store": {"batch_size": 0}})
        assert error.key == "store.batch_size" and "0" in error.reason

    def test_a_backlog_batch_smaller_than_the_live_batch_is_refused(self) -> None:
        """ingest.backlog_batch is the batch size while a backlog waits: never below ingest.max_batch."""
        error = bad({"ingest": {"max_batch": 500, "backlog_batch": 100}})
        assert error.key == "ingest.backlog_batch" and "max_batch (500)" in error.reason
        assert settings_from_dict({"ingest": {"max_batch": 500, "backlog_batch": 500}}, {}).ingest.backlog_batch == 500

    def test_bad_mqtt_url(self) -> None:
        """An MQTT URL with another scheme is refused with the key mqtt.url."""
        assert bad({"mqtt": {"url": "http://h:1883"}}).key == "mqtt.url"

    def test_bad_store_url(self) -> None:
        """A store URL of an unknown kind is refused with the key store.url."""
        assert bad({"store": {"url": "postgres://h/db"}}).key == "store.url"

    def test_unknown_time_zone(self) -> None:
        """A time zone that does not exist is refused."""
        assert bad({"park": {"timezone": "Mars/Olympus"}}).key == "park.timezone"

    def test_bad_station_id(self) -> None:
        """A listed station that breaks the device-id rule is refused."""
        assert bad({"park": {"stations": ["ok", "not ok"]}}).key == "park.stations"

    def test_passwords_never_appear_in_the_message(self) -> None:
        """An error about a URL with a password does not repeat the password."""
        error = bad({"mqtt": {"url": "ftp://user:s3cret@h"}})
        assert "s3cret" not in str(error)
        error = bad({"store": {"url": "influxdb1://user:s3cret@h:notaport/db"}})
        assert "s3cret" not in str(error)


class TestCheckConfigCommand:
    def test_good_file_exits_0(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """check-config on a good file exits 0."""
        path = tmp_path / "ok.toml"
        path.write_text('[park]\nid = "p1"\n')
        assert main(["check-config", str(path)]) == 0

    def test_bad_file_exits_2_with_key_and_reason(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """check-config on a bad file exits 2 and prints the key and the reason."""
        path = tmp_path / "bad.toml"
        path.write_text("[store]\nflush_interval_s = -1\n")
        assert main(["check-config", str(path)]) == 2
        assert "store.flush_interval_s" in capsys.readouterr().err

    def test_not_toml_exits_2(self, tmp_path: Path) -> None:
        """A file that is not TOML is refused with exit 2."""
        path = tmp_path / "bad.toml"
        path.write_text("[store\n")
        assert main(["check-config", str(path)]) == 2
