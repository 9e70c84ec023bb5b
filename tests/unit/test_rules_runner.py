"""The rules thread: fed by the pipeline, reloads its file, and keeps rule state over a restart."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.cli import main
from ingest.decode import NewValue
from ingest.errors import ConfigError
from ingest.models import AirReading
from rules.config import Park
from rules.runner import RulesRunner
from rules.signals import RecordingSink
from tests.unit.test_drain import eventually

T0 = datetime(2026, 11, 27, tzinfo=UTC)
RULE = """
[[rule]]
type = "threshold"
name = "pm25_high"
value = "pm25"
for_s = {for_s}
levels = [{{ severity = "warning", above = 75.0 }}]
"""


def decoded(seconds: float, pm25: float) -> NewValue:
    at = T0 + timedelta(seconds=seconds)
    return int(at.timestamp() * 1e9), AirReading(ts=at, values={"pm25": pm25}, station="ST01")


def runner(tmp_path: Path, sink: RecordingSink, for_s: int = 0) -> RulesRunner:
    path = tmp_path / "rules.toml"
    if not path.exists():
        path.write_text(RULE.format(for_s=for_s))
    return RulesRunner(path, Park(ZoneInfo("Asia/Shanghai")), sink, state_path=tmp_path / "state.json",
                       tick_s=0.02, save_every_s=0.05)


class TestRunner:
    def test_batches_from_the_pipeline_reach_the_rules(self, tmp_path: Path) -> None:
        """A kept batch handed to `feed` is judged on the rules thread."""
        sink = RecordingSink()
        r = runner(tmp_path, sink)
        r.start()
        r.feed([decoded(0, 80)])
        assert eventually(lambda: len(sink.signals) == 1)
        r.stop()

    def test_state_survives_a_restart(self, tmp_path: Path) -> None:
        """A `for` begun before a restart completes after it."""
        sink = RecordingSink()
        r = runner(tmp_path, sink, for_s=300)
        r.start()
        r.feed([decoded(0, 80), decoded(200, 80)])
        assert eventually(lambda: len(sink.signals) == 1)  # pending
        r.stop()
        sink2 = RecordingSink()
        r2 = runner(tmp_path, sink2, for_s=300)
        r2.start()
        r2.feed([decoded(300, 80)])
        assert eventually(lambda: [s.state for s in sink2.signals] == ["firing"])
        r2.stop()

    def test_state_is_saved_while_running_not_only_at_stop(self, tmp_path: Path) -> None:
        """A crash loses at most `save_every_s` of rule state: the file is written while the rules run."""
        sink = RecordingSink()
        r = runner(tmp_path, sink, for_s=300)
        r.start()
        r.feed([decoded(0, 80)])
        assert eventually(lambda: '"since"' in _text(tmp_path / "state.json"))
        r.stop()

    def test_a_state_that_cannot_be_saved_does_not_stop_the_rules(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        sink = RecordingSink()
        r = runner(tmp_path, sink)
        r.engine.snapshot = lambda: {"x": object()}  # type: ignore[method-assign]  # not JSON
        r.start()
        assert eventually(lambda: "cannot save the rule state" in caplog.text)
        r.feed([decoded(0, 80)])
        assert eventually(lambda: len(sink.signals) == 1)
        r.stop()

    def test_a_changed_file_is_reloaded_and_a_bad_one_keeps_the_old_rules(self, tmp_path: Path) -> None:
        """Editing the file swaps the rules; a broken edit is refused and the running rules stay."""
        sink = RecordingSink()
        r = runner(tmp_path, sink)
        r.start()
        path = tmp_path / "rules.toml"
        time.sleep(0.05)
        path.write_text(RULE.format(for_s=0).replace("75.0", "100.0"))
        r.request_reload()
        assert eventually(lambda: r.engine.rules[-1].config.levels[0].above == 100.0)  # type: ignore[attr-defined]
        path.write_text("[[rule]]\ntype = 'threshold'\n")
        r.request_reload()
        time.sleep(0.2)
        assert r.engine.rules[-1].name == "pm25_high"
        r.stop()

    def test_a_bad_rules_file_stops_the_start(self, tmp_path: Path) -> None:
        """At start-up a bad rules file is a configuration error naming the rule's key."""
        path = tmp_path / "rules.toml"
        path.write_text('[[rule]]\ntype = "threshold"\nname = "x"\nvalue = "pm25"\nlevels = []\n')
        with pytest.raises(ConfigError) as exc:
            runner(tmp_path, RecordingSink())
        assert "rule[0].levels" in exc.value.key

    def test_check_config_refuses_a_configuration_whose_rules_are_bad(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check-config also validates the rules file the configuration names (relative to it)."""
        (tmp_path / "rules.toml").write_text("[[rule]]\ntype = 'nope'\nname = 'x'\n")
        (tmp_path / "c.toml").write_text('[rules]\nfile = "rules.toml"\n')
        assert main(["check-config", str(tmp_path / "c.toml")]) == 2
        assert "rule[0]" in capsys.readouterr().err


class TestBackPressure:
    def test_the_queue_to_the_rules_is_bounded(self, tmp_path: Path) -> None:
        """When the rules fall behind, feeding waits instead of piling batches up in memory."""
        import threading  # noqa: PLC0415

        sink = RecordingSink()
        r = RulesRunner(None, Park(ZoneInfo("Asia/Shanghai")), sink, state_path=tmp_path / "s.json",
                        max_pending_batches=2)
        gate = threading.Event()
        r.engine.process = lambda event, at: gate.wait() or []  # type: ignore[method-assign]
        r.start()
        fed = threading.Event()

        def feed_many() -> None:
            for i in range(5):
                r.feed([decoded(i, 10)])
            fed.set()

        threading.Thread(target=feed_many, daemon=True).start()
        assert not fed.wait(0.5), "feeding five batches must wait for a rules thread that holds two"
        gate.set()
        assert fed.wait(5)
        r.stop()


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
