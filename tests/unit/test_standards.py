"""GB 3095 limits: every figure of domain.md §3.1 and §3.2, grades, stages by date, units."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

import rules.standards
from rules.standards import EDITIONS, TABLES, edition_for, limit, limit_row, unit

# (pollutant, averaging): (2012 I, II), (2026 transition I, II), (2026 final I, II), copied from domain.md.
FIGURES = {
    ("so2", "annual"): ((20, 60), (20, 60), (20, 20)),
    ("so2", "24h"): ((50, 150), (50, 150), (50, 50)),
    ("so2", "1h"): ((150, 500), (150, 500), (150, 150)),
    ("no2", "annual"): ((40, 40), (40, 40), (30, 30)),
    ("no2", "24h"): ((80, 80), (80, 80), (50, 50)),
    ("no2", "1h"): ((200, 200), (200, 200), (200, 200)),
    ("co", "24h"): ((4, 4), (4, 4), (4, 4)),
    ("co", "1h"): ((10, 10), (10, 10), (10, 10)),
    ("o3", "8h"): ((100, 160), (100, 160), (100, 160)),
    ("o3", "1h"): ((160, 200), (160, 200), (160, 200)),
    ("pm10", "annual"): ((40, 70), (40, 60), (20, 50)),
    ("pm10", "24h"): ((50, 150), (50, 120), (50, 100)),
    ("pm25", "annual"): ((15, 35), (15, 30), (10, 25)),
    ("pm25", "24h"): ((35, 75), (35, 60), (25, 50)),
    ("tsp", "annual"): ((80, 200), (80, 200), (80, 200)),
    ("tsp", "24h"): ((120, 300), (120, 300), (120, 300)),
    ("nox", "annual"): ((50, 50), (50, 50), (40, 40)),
    ("nox", "24h"): ((100, 100), (100, 100), (70, 70)),
    ("nox", "1h"): ((250, 250), (250, 250), (250, 250)),
    ("pb", "annual"): ((0.5, 0.5), (0.5, 0.5), (0.5, 0.5)),
    ("pb", "quarterly"): ((1, 1), (1, 1), (1, 1)),
    ("bap", "annual"): ((0.001, 0.001), (0.001, 0.001), (0.001, 0.001)),
    ("bap", "24h"): ((0.0025, 0.0025), (0.0025, 0.0025), (0.0025, 0.0025)),
}
CASES = [
    (pollutant, averaging, edition, grade, figures[e][grade - 1])
    for (pollutant, averaging), figures in FIGURES.items()
    for e, edition in enumerate(EDITIONS)
    for grade in (1, 2)
]


class TestLimits:
    @pytest.mark.parametrize(("pollutant", "averaging", "edition", "grade", "expected"), CASES)
    def test_every_figure(self, pollutant: str, averaging: str, edition: str, grade: int, expected: float) -> None:
        """Each limit is the figure of domain.md for its edition and grade."""
        assert limit(pollutant, averaging, edition, grade) == expected  # type: ignore[arg-type]

    def test_tables_hold_nothing_else(self) -> None:
        """The tables hold exactly the rows listed in domain.md, in every edition."""
        for edition in EDITIONS:
            assert {(r.pollutant, r.averaging) for r in TABLES[edition]} == set(FIGURES)

    def test_grade_ii_is_the_default(self) -> None:
        """Without a grade, the grade II limit (class-2 zone: a chemical park) is given."""
        assert limit("pm25", "24h", "2012") == 75
        assert limit("pm10", "annual", "2026-transition") == 60

    @pytest.mark.parametrize(("pollutant", "averaging"), [("pm25", "1h"), ("co", "annual"), ("o3", "24h"),
                                                          ("pb", "1h"), ("so2", "quarterly")])
    def test_no_limit_gives_none(self, pollutant: str, averaging: str) -> None:
        """A pollutant without a limit for an averaging time gives None in every edition."""
        for edition in EDITIONS:
            assert limit(pollutant, averaging, edition) is None

    @pytest.mark.parametrize(
        ("args", "message"),
        [(("pm2.5", "24h", "2012"), "pollutant"), (("pm25", "daily", "2012"), "averaging"),
         (("pm25", "24h", "2026"), "edition")],
    )
    def test_unknown_names_are_refused(self, args: tuple[str, str, str], message: str) -> None:
        """An unknown pollutant, averaging time or edition is a ValueError that names the accepted ones."""
        with pytest.raises(ValueError, match=message):
            limit(*args)

    @pytest.mark.parametrize("grade", [0, 3, True])
    def test_bad_grade_is_refused(self, grade: int) -> None:
        """Only grades 1 and 2 exist."""
        with pytest.raises(ValueError, match="grade"):
            limit("pm25", "24h", "2012", grade)  # type: ignore[arg-type]

    def test_sources_are_marked(self) -> None:
        """2012 rows are confirmed; 2026 rows are UNCONFIRMED except the final PM2.5 rows confirmed by news."""
        assert all(row.confirmed for row in TABLES["2012"])
        confirmed_2026 = {(e, r.pollutant, r.averaging) for e in EDITIONS[1:] for r in TABLES[e] if r.confirmed}
        assert confirmed_2026 == {("2026-final", "pm25", "annual"), ("2026-final", "pm25", "24h")}
        row = limit_row("pm25", "24h", "2026-transition")
        assert row is not None
        assert row.source == "B+C"


class TestDocstringTable:
    def test_docstring_table_matches_the_data(self) -> None:
        """The module docstring's table shows every figure the code uses, and no other."""
        doc = rules.standards.__doc__ or ""
        rows = re.findall(r"^\s{4}(\w+)\s+(1h|24h|8h|annual|quarterly)\s+(.*)$", doc, re.MULTILINE)
        shown = {(p, a): tuple(float(n) for n in re.findall(r"\d+(?:\.\d+)?", rest)) for p, a, rest in rows}
        expected = {key: tuple(float(v) for pair in figures for v in pair) for key, figures in FIGURES.items()}
        assert shown == expected


class TestEditionFor:
    @pytest.mark.parametrize(
        ("day", "choice", "edition"),
        [
            (date(2026, 2, 28), None, "2012"),
            (date(2026, 3, 1), None, "2026-transition"),
            (date(2030, 12, 31), None, "2026-transition"),
            (date(2031, 1, 1), None, "2026-final"),
            (date(2031, 1, 1), "2012", "2012"),
            (date(2020, 1, 1), "2026", "2026-transition"),
            (date(2030, 12, 31), "2026", "2026-transition"),
            (date(2031, 1, 1), "2026", "2026-final"),
            (datetime(2031, 1, 1, 0, 30, tzinfo=ZoneInfo("Asia/Shanghai")), "2026", "2026-final"),
        ],
    )
    def test_stage_by_date(self, day: date, choice: str | None, edition: str) -> None:
        """2026 means the transition stage up to 2030-12-31 and the final stage from 2031-01-01."""
        assert edition_for(day, choice) == edition

    def test_unknown_choice_is_refused(self) -> None:
        """A choice other than 2012 or 2026 is a ValueError."""
        with pytest.raises(ValueError, match="2026-final"):
            edition_for(date(2031, 1, 1), "2026-final")


class TestUnits:
    def test_co_is_in_mg(self) -> None:
        """CO limits are in mg/m³, all others in µg/m³."""
        assert unit("co") == "mg/m³"
        assert unit("pm25") == unit("bap") == "µg/m³"
