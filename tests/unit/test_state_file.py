"""The rules' state file: saved off the rules thread, atomically, the latest state winning; a failed save
is logged and the next one tries again."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rules.state_file import StateFile, encode


class GatedFsync:
    """An fsync that waits until the test opens the gate, so a write can be caught half way."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        os.fsync(fd)


def read(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


class TestEncode:
    @pytest.mark.parametrize("state", [
        {},
        {"a": 1, "b": [1.5, None, True, "x"], "c": {}},
        {"engine": {"rules": {"pm25_24h": {"ST01": {"open": {"2026-12-03T01:00:00+00:00": [35.0, 12, 4095]}}},
                              "gates": {"粤B12345": {"since": 1.0}}}}, "fingerprints": {"r": "abc"}},
        {"deep": {"er": {"and": {"deeper": {"still": {"x": [{"y": {}}]}}}}}},
    ])
    def test_reads_back_as_the_same_value(self, state: dict[str, object]) -> None:
        text = encode(state)
        assert json.loads(text) == state
        assert json.loads(text) == json.loads(json.dumps(state, ensure_ascii=False))

    def test_many_members_read_back_in_order(self) -> None:
        """The innermost level is encoded in groups of members: none is lost or moved at the seams."""
        state = {"engine": {"rules": {"air_quality": {f"ST{n:04d}": {"open": {"h": [n, 1, 1]}} for n in range(200)}}}}
        text = encode(state)
        assert json.loads(text) == state
        assert list(json.loads(text)["engine"]["rules"]["air_quality"]) == [f"ST{n:04d}" for n in range(200)]

    def test_keeps_chinese_readable(self) -> None:
        assert "粤B12345" in encode({"plate": {"粤B12345": 1}})

    def test_takes_what_json_takes_as_json_does(self) -> None:
        state = {"x": {1: "an int key", "y": float("inf")}}
        assert json.loads(encode(state)) == json.loads(json.dumps(state, ensure_ascii=False))

    def test_refuses_what_json_refuses(self) -> None:
        with pytest.raises(TypeError):
            encode({"x": {"y": object()}})


class TestStateFile:
    def test_load_of_no_file_is_none(self, tmp_path: Path) -> None:
        assert StateFile(tmp_path / "state.json").load() is None

    @pytest.mark.parametrize("content", ["{half", "[1, 2]", "\xff"])
    def test_an_unreadable_file_is_none_and_logged(self, tmp_path: Path, content: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
        path = tmp_path / "state.json"
        path.write_text(content, encoding="latin-1")
        with caplog.at_level(logging.WARNING, logger="rules.state_file"):
            assert StateFile(path).load() is None
        assert "starting fresh" in caplog.text

    def test_save_writes_now_and_load_reads_it_back(self, tmp_path: Path) -> None:
        f = StateFile(tmp_path / "sub" / "state.json")
        assert f.save({"engine": {"x": [1, 2]}})
        assert f.load() == {"engine": {"x": [1, 2]}}
        assert not (tmp_path / "sub" / "state.tmp").exists()

    def test_save_later_returns_before_the_disk_is_done(self, tmp_path: Path) -> None:
        """The rules thread hands the state over and goes on; the writer thread waits for the disk."""
        fsync = GatedFsync()
        f = StateFile(tmp_path / "state.json", fsync=fsync)
        f.save_later({"n": 1})  # returns although fsync is held
        assert fsync.entered.wait(5)
        assert not (tmp_path / "state.json").exists()  # not renamed before it is on disk
        fsync.gate.set()
        assert f.flush(5)
        assert read(tmp_path / "state.json") == {"n": 1}
        f.close()

    def test_the_state_is_encoded_on_the_writer_thread_not_the_callers(self, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """The rules thread only hands its snapshot over; encoding 1.5 MB of it held the rules thread for
        35 - 45 ms every save."""
        threads: list[str] = []

        def recording_encode(state: Mapping[str, Any]) -> str:
            threads.append(threading.current_thread().name)
            return json.dumps(state)

        monkeypatch.setattr("rules.state_file.encode", recording_encode)
        f = StateFile(tmp_path / "state.json")
        f.save_later({"n": 1})
        f.close()
        assert threads == ["rules-state"]
        assert read(tmp_path / "state.json") == {"n": 1}

    def test_a_state_that_cannot_be_encoded_is_logged_and_the_next_one_is_written(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        f = StateFile(tmp_path / "state.json")
        with caplog.at_level(logging.ERROR, logger="rules.state_file"):
            f.save_later({"x": object()})  # a rule's snapshot that is not JSON-safe
            assert f.flush(5)
        assert "cannot save the rule state, it cannot be encoded" in caplog.text
        f.save_later({"n": 2})
        f.close()
        assert read(tmp_path / "state.json") == {"n": 2}

    def test_the_latest_state_wins_over_one_still_waiting(self, tmp_path: Path) -> None:
        fsync = GatedFsync()
        f = StateFile(tmp_path / "state.json", fsync=fsync)
        f.save_later({"n": 1})
        assert fsync.entered.wait(5)  # 1 is being written
        f.save_later({"n": 2})  # waits
        f.save_later({"n": 3})  # replaces 2, which is never written
        fsync.gate.set()
        f.close()
        assert read(tmp_path / "state.json") == {"n": 3}
        assert fsync.calls == 2

    def test_save_at_stop_supersedes_what_waits(self, tmp_path: Path) -> None:
        fsync = GatedFsync()
        f = StateFile(tmp_path / "state.json", fsync=fsync)
        f.save_later({"n": 1})
        assert fsync.entered.wait(5)
        f.save_later({"n": 2})
        threading.Timer(0.05, fsync.gate.set).start()
        assert f.save({"n": "final"})  # waits for 1 to finish, drops 2
        f.close()
        assert read(tmp_path / "state.json") == {"n": "final"}

    def test_a_failed_write_is_logged_and_the_next_one_works(self, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
        def full(fd: int) -> None:
            raise OSError(28, "No space left on device")

        f = StateFile(tmp_path / "state.json", fsync=full)
        with caplog.at_level(logging.ERROR, logger="rules.state_file"):
            f.save_later({"n": 1})
            assert f.flush(5)
        assert "cannot save the rule state" in caplog.text and "No space left" in caplog.text
        assert not (tmp_path / "state.json").exists()
        f._fsync = os.fsync  # the disk has room again
        f.save_later({"n": 2})
        f.close()
        assert read(tmp_path / "state.json") == {"n": 2}

    def test_an_earlier_state_stays_when_a_save_fails(self, tmp_path: Path) -> None:
        path = tmp_path / "state.json"
        f = StateFile(path)
        f.save({"n": 1})
        f._fsync = lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error"))
        assert not f.save({"n": 2})
        assert read(path) == {"n": 1}

    def test_no_saving_after_close(self, tmp_path: Path) -> None:
        f = StateFile(tmp_path / "state.json")
        f.close()
        with pytest.raises(RuntimeError):
            f.save_later({"n": 1})
