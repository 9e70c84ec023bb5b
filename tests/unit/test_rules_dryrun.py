"""`parkwatch rules test`: a recording through the rules on a virtual clock, alerts printed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.cli import main

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
RULES = """
[[rule]]
type = "threshold"
name = "pm25_high"
value = "pm25"
for_s = 120
levels = [{ severity = "major", above = 75.0, clear = 65.0 }]

[[rule]]
type = "silent"
name = "station_silent"
devices = ["ST01", "ST02"]
timeout_s = 300
"""


def recording(path: Path) -> Path:
    lines = []
    for i, pm25 in enumerate([50, 80, 85, 90, 60, 60]):
        at = T0 + timedelta(minutes=i)
        body = {"ts": at.isoformat(), "values": {"pm25": pm25}}
        lines.append(json.dumps({"time": at.isoformat(), "topic": "park/demo/air/ST01/reading",
                                 "payload": json.dumps(body), "qos": 1, "retain": False}))
    lines.append(json.dumps({"time": (T0 + timedelta(minutes=10)).isoformat(),
                             "topic": "park/demo/air/ST01/reading", "payload": "{bad", "qos": 1, "retain": False}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_recording_through_the_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A recording gives pending, firing after the `for`, resolved, and the silence of the station that never
    reported, on the recorded clock; bad messages are counted, not fatal."""
    (tmp_path / "rules.toml").write_text(RULES)
    rec = recording(tmp_path / "rec.jsonl")
    assert main(["rules", "test", str(rec), "--rules", str(tmp_path / "rules.toml"), "--json"]) == 0
    out, err = capsys.readouterr()
    changes = [json.loads(line) for line in out.splitlines()]
    assert [(c["rule"], c["source"], c["state"]) for c in changes] == [
        ("pm25_high", "ST01", "pending"),
        ("pm25_high", "ST01", "firing"),
        ("pm25_high", "ST01", "resolved"),
        ("station_silent", "ST02", "firing"),
        ("station_silent", "ST01", "firing"),  # its last good reading was at +5 min; the bad one does not count
    ]
    assert changes[1]["at"] == (T0 + timedelta(minutes=3)).isoformat()
    assert "7 messages" in err and "invalid_json 1" in err


def test_without_rules_it_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With no rules file given or configured, the command exits 2 naming the key."""
    assert main(["rules", "test", str(recording(tmp_path / "r.jsonl"))]) == 2
    assert "rules.file" in capsys.readouterr().err
