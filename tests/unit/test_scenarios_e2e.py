"""Scenarios as end-to-end tests: every shipped scenario, played on a virtual clock through the decoder and
config/rules.example.toml (what `parkwatch rules test SCENARIO.toml` does), causes the alerts it expects
and nothing else.

What counts:
- an alert is a `firing` signal (raised, or its severity changed) before the end of the scenario; at the end
  every simulated device says it goes offline, as a stopped simulator does, which is not a finding;
- an expectation is met by a firing of its rule and source (at its severity, if it names one) no earlier
  than `after_s` and no later than `within_s` after that: event time, seconds from the scenario start;
- a firing is expected if an expectation covers its rule, source and severity and it comes no earlier than
  that expectation's `after_s` (severity may fall and rise again later, as a leak decays);
- repeated messages (same topic and payload, as gate_day resends events) go to the rules once: the service's
  spool drops them before the rules see them, `dry_run` does not.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from config.commands import demo
from config.compose import decode_settings, park_of
from config.settings import settings_from_dict
from rules.config import load_rules
from rules.dryrun import DryRunResult, dry_run
from rules.engine import RuleEngine
from rules.signals import Signal
from rules.state_file import encode
from simulators.recording import Record
from simulators.scenario import (
    SCENARIO_DIR,
    VIRTUAL_START,
    Expectation,
    Scenario,
    load_scenario,
    scenario_records,
    shipped_scenarios,
)
from simulators.stations import CorruptFault

RULES = Path(__file__).resolve().parents[2] / "config" / "rules.example.toml"
DEMO = SCENARIO_DIR / "demo.toml"
TWO_HOURS = 7200.0
MAIN_KINDS = {  # what the demo must show, one alert of each: kind -> the example rules that raise it
    "threshold crossing": frozenset({"pm25_high"}),
    "gas leak": frozenset({"h2s_leak"}),
    "silent or offline device": frozenset({"station_silent", "device_offline"}),
    "faulty sensor": frozenset({"instrument_fault", "pm25_stuck", "rh_out_of_range", "so2_negative"}),
    "hazmat without appointment": frozenset({"hazmat_unbooked"}),
    "blacklisted plate": frozenset({"blacklisted"}),
    "exit without entry": frozenset({"exit_without_entry"}),
}

# Alerts a scenario may raise besides its expectations, (rule, source) by scenario name, each with the
# reason the simulation legitimately causes it. None needed so far.
ALLOWED: dict[str, set[tuple[str, str]]] = {}

# Scenarios that raise what they should not because of a known bug elsewhere; strict, so the fix shows.
KNOWN_BUGS: dict[str, str] = {}  # scenario -> why it is expected to fail (none left)


@dataclass(frozen=True)
class Run:
    """A scenario played through the example rules: its start, end and the alerts it raised."""

    scenario: Scenario
    start: datetime
    firing: tuple[Signal, ...]
    rejected: dict[str, int]

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.scenario.duration)

    def met(self, e: Expectation) -> Signal | None:
        """The first alert that meets `e`, if any."""
        begin, until = e.window(self.start)
        return next((s for s in self.firing if e.covers(s.rule, s.source, s.severity)
                     and begin <= s.at and (until is None or s.at <= until)), None)

    def unexpected(self) -> list[Signal]:
        """Alerts that no expectation covers and the scenario's allow-list does not name."""
        allowed = ALLOWED.get(self.scenario.name, set())
        return [s for s in self.firing if (s.rule, s.source) not in allowed and not any(
            e.covers(s.rule, s.source, s.severity) and e.window(self.start)[0] <= s.at for e in self.scenario.expect)]


@cache
def play(path: Path, start: datetime = VIRTUAL_START) -> Run:
    """Play the scenario from `start` through the example rules, with its devices as the park's."""
    scenario, result = played(path, start)
    end = start + timedelta(seconds=scenario.duration)
    firing = tuple(s for s in result.signals if s.state == "firing" and s.at < end)
    return Run(scenario, start, firing, result.rejected)


def played(
    path: Path, start: datetime = VIRTUAL_START, after_each: Callable[[RuleEngine], object] = lambda engine: None
) -> tuple[Scenario, DryRunResult]:
    """The scenario and its dry run through the example rules, with its devices as the park's."""
    scenario = load_scenario(path)
    settings = settings_from_dict({"park": {"stations": [s.id for s in scenario.stations],
                                            "gates": [g.id for g in scenario.gates]}}, {})
    records = scenario_records(scenario, park=settings.park.id, tz=settings.park.tz, start=start)
    return scenario, dry_run(once(records), decode_settings(settings), load_rules(RULES), park_of(settings),
                             tick_s=settings.rules.tick_s, after_each=after_each)


def once(records: list[Record]) -> list[Record]:
    """Records in time order, each message once (a resent one is the same topic and payload)."""
    seen: set[tuple[str, bytes]] = set()
    out = []
    for r in sorted(records, key=lambda r: r.time):
        if (r.topic, r.payload) not in seen:
            seen.add((r.topic, r.payload))
            out.append(r)
    return out


def shown(signals: list[Signal] | tuple[Signal, ...], start: datetime) -> str:
    return "\n".join(f"  +{(s.at - start).total_seconds():.0f} s {s.rule} {s.source} {s.severity}: {s.message}"
                     for s in signals)


def scenario_params() -> list[object]:
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.xfail(reason=KNOWN_BUGS[p.stem], strict=True)]
                         if p.stem in KNOWN_BUGS else []) for p in shipped_scenarios()]


class TestShippedScenarios:
    @pytest.mark.parametrize("path", shipped_scenarios(), ids=lambda p: p.stem)
    def test_every_expectation_is_met(self, path: Path) -> None:
        """Each expected alert fires, at its severity, within its time after its cause."""
        run = play(path)
        missing = [e for e in run.scenario.expect if run.met(e) is None]
        assert not missing, f"{path.stem}: not met: {missing}\nwhat fired:\n{shown(run.firing, run.start)}"

    @pytest.mark.parametrize("path", scenario_params())
    def test_nothing_else_fires(self, path: Path) -> None:
        """No alert fires that the scenario does not expect (or explicitly allow)."""
        run = play(path)
        assert not run.unexpected(), f"{path.stem}: unexpected:\n{shown(run.unexpected(), run.start)}"

    @pytest.mark.parametrize("path", shipped_scenarios(), ids=lambda p: p.stem)
    def test_only_corrupted_frames_are_refused(self, path: Path) -> None:
        """The decoder refuses nothing of a scenario except the frames it corrupts on purpose."""
        run = play(path)
        if not any(isinstance(f, CorruptFault) for f in run.scenario.faults):
            assert run.rejected == {}

    def test_the_quiet_day_expects_no_alert(self) -> None:
        """The baseline expects nothing, so any alert it raises is a false alarm."""
        assert load_scenario(SCENARIO_DIR / "baseline.toml").expect == ()

    def test_expectations_name_rules_that_exist(self) -> None:
        """Every expectation names a rule of the example rules."""
        names = {r.name for r in load_rules(RULES).rule}
        for path in shipped_scenarios():
            assert {e.rule for e in load_scenario(path).expect} <= names, path.stem


class TestDemo:
    def test_parkwatch_demo_plays_it_with_the_example_rules(self) -> None:
        """`parkwatch demo` defaults to demo.toml and config/rules.example.toml."""
        assert demo.DEFAULT_SCENARIO == DEMO
        assert demo.DEFAULT_RULES == RULES

    def test_it_expects_every_main_kind_of_alert(self) -> None:
        """Its expectations include a threshold, a gas leak, a device, a faulty sensor and three gate violations."""
        expected = {e.rule for e in load_scenario(DEMO).expect}
        assert {kind for kind, rules in MAIN_KINDS.items() if not rules & expected} == set()

    @pytest.mark.parametrize("hour", [0.0, 7.5, 13.0, 18.0, 22.5])
    def test_every_expected_alert_fires_within_two_hours(self, hour: float) -> None:
        """Whenever the demo starts (it starts two hours before now), each alert fires in its first 7,200
        simulated seconds, and nothing else does."""
        start = datetime.combine(VIRTUAL_START.date(), time(), VIRTUAL_START.tzinfo) + timedelta(hours=hour)
        run = play(DEMO, start)
        assert run.scenario.duration <= TWO_HOURS
        for e in run.scenario.expect:
            alert = run.met(e)
            assert alert is not None, f"{e} not met from {start}:\n{shown(run.firing, start)}"
            assert (alert.at - start).total_seconds() <= TWO_HOURS
        assert not run.unexpected(), f"unexpected from {start}:\n{shown(run.unexpected(), start)}"


class TestRuleStateSnapshots:
    def test_a_snapshot_does_not_change_with_what_the_rules_see_after_it(self) -> None:
        """The rules thread hands each snapshot of its state to the state file's writer thread, which encodes
        it while the rules go on (rules/state_file.py): so no rule may put its live containers in a snapshot
        (rules/interfaces.py). The demo (395 messages) through every kind of rule of the example rules,
        snapshotted every 10 messages: each snapshot, encoded at the end, is what it was when taken."""
        taken: list[tuple[dict[str, Any], str]] = []
        seen = itertools.count()

        def take(engine: RuleEngine) -> None:
            if next(seen) % 10 == 0:
                snapshot = engine.snapshot()
                taken.append((snapshot, encode(snapshot)))

        played(DEMO, after_each=take)
        assert len(taken) > 30
        changed = [i for i, (snapshot, text) in enumerate(taken) if encode(snapshot) != text]
        assert changed == []
