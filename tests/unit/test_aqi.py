"""HJ 633 AQI: sub-indices at and between the breakpoints, the 800 µg/m³ rules, reports and the CLI.

Expected values are computed by hand from the tables of domain.md §2, written out here independently of
rules/aqi.py.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.cli import main
from rules.aqi import POLLUTANTS, category_for, daily_aqi, edition_in_force, hourly_aqi, iaqi

STEPS = (0, 50, 100, 150, 200, 300, 400, 500)
TABLE_2012 = {
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),
    "pm25_24h": (0, 35, 75, 115, 150, 250, 350, 500),
}
TABLE_2026 = {
    **TABLE_2012,
    "pm10_24h": (0, 50, 120, 250, 350, 420, 500, 600),
    "pm25_24h": (0, 35, 60, 115, 150, 250, 350, 500),
}
TABLES = {"2012": TABLE_2012, "2026": TABLE_2026}
BREAKPOINTS = [
    (edition, key, concentration, STEPS[i])
    for edition, table in TABLES.items()
    for key, column in table.items()
    for i, concentration in enumerate(column)
]
Segment = tuple[int, int, int, int]  # BP_lo, BP_hi, IAQI_lo, IAQI_hi
SEGMENTS = [
    (edition, key, (column[i - 1], column[i], STEPS[i - 1], STEPS[i]))
    for edition, table in TABLES.items()
    for key, column in table.items()
    for i in range(1, len(column))
]
FULL_COLUMNS = [(e, k, c[-1]) for e, t in TABLES.items() for k, c in t.items() if k not in ("so2_1h", "o3_8h")]


class TestBreakpoints:
    @pytest.mark.parametrize(("edition", "key", "concentration", "expected"), BREAKPOINTS)
    def test_iaqi_at_every_breakpoint(self, edition: str, key: str, concentration: int, expected: int) -> None:
        """A concentration exactly at a breakpoint has the IAQI of that row."""
        assert iaqi(key, concentration, edition) == expected
        assert iaqi(key, float(concentration), edition) == expected

    @pytest.mark.parametrize(("edition", "key", "segment"), SEGMENTS)
    def test_midpoint_of_every_segment(self, edition: str, key: str, segment: Segment) -> None:
        """Halfway between two breakpoints lies halfway between their IAQIs (linear interpolation)."""
        lo, hi, i_lo, i_hi = segment
        assert iaqi(key, (lo + hi) / 2, edition) == (i_lo + i_hi) // 2

    @pytest.mark.parametrize(("edition", "key", "segment"), SEGMENTS)
    def test_just_above_a_breakpoint_rounds_up(self, edition: str, key: str, segment: Segment) -> None:
        """Just above a breakpoint the IAQI is one more than that row's: rounding is up, not to nearest."""
        lo, hi, i_lo, _ = segment
        assert iaqi(key, lo + (hi - lo) / 1000, edition) == i_lo + 1

    def test_the_2026_edition_changes_only_the_pm_rows(self) -> None:
        """Apart from PM10 and PM2.5 at IAQI 100, both editions' tables are the same (as written here)."""
        changed = {key for key in TABLE_2012 if TABLE_2012[key] != TABLE_2026[key]}
        assert changed == {"pm10_24h", "pm25_24h"}

    def test_so2_24h_row_is_not_the_1h_row(self) -> None:
        """SO2 24 h 200 µg/m³ is IAQI 108 (150..475 → 100..150), not 58 as with aqi-hub's repeated 1 h row."""
        assert iaqi("so2_24h", 200, "2012") == 108  # 100 + 50 × 50/325 = 107.69
        assert iaqi("so2_24h", 475, "2012") == 150


class TestInterpolation:
    @pytest.mark.parametrize(
        ("key", "concentration", "edition", "expected"),
        [
            ("pm25_24h", 50, "2012", 69),  # 50 + 50 × 15/40 = 68.75
            ("pm25_24h", 50, "2026", 80),  # 50 + 50 × 15/25 = 80
            ("pm25_24h", 75, "2026", 114),  # 100 + 50 × 15/55 = 113.64
            ("pm10_24h", 150, "2026", 112),  # 100 + 50 × 30/130 = 111.54
            ("pm25_24h", 35.1, "2012", 51),  # 50 + 50 × 0.1/40 = 50.125
            ("no2_1h", 350, "2012", 115),  # 100 + 50 × 150/500
            ("o3_8h", 180, "2012", 119),  # 100 + 50 × 20/55 = 118.18
            ("o3_1h", 180, "2026", 75),  # 50 + 50 × 20/40
            ("co_1h", 7.5, "2012", 75),
            ("pm25_24h", 0.01, "2012", 1),  # 50 × 0.01/35 = 0.014
            ("pm25_24h", 0, "2026", 0),
        ],
    )
    def test_hand_computed_values(self, key: str, concentration: float, edition: str, expected: int) -> None:
        """IAQI = (I_hi − I_lo)/(BP_hi − BP_lo) × (C − BP_lo) + I_lo, rounded up."""
        assert iaqi(key, concentration, edition) == expected

    def test_decimal_concentrations_are_exact(self) -> None:
        """CO 2.2 mg/m³ (24 h) is IAQI 55 exactly, not 56 from the float 2.2000000000000002."""
        assert iaqi("co_24h", 2.2, "2012") == 55
        assert iaqi("co_24h", 2.2001, "2012") == 56

    @pytest.mark.parametrize(("edition", "key", "top"), FULL_COLUMNS)
    def test_above_the_top_breakpoint_is_500(self, edition: str, key: str, top: int) -> None:
        """Above the last breakpoint of a complete column the IAQI is 500."""
        assert iaqi(key, top + 1, edition) == 500
        assert iaqi(key, top * 10, edition) == 500

    @given(
        key=st.sampled_from(sorted(TABLE_2012)),
        edition=st.sampled_from(["2012", "2026"]),
        a=st.floats(min_value=0, max_value=5000),
        b=st.floats(min_value=0, max_value=5000),
    )
    def test_iaqi_never_falls_as_concentration_rises(self, key: str, edition: str, a: float, b: float) -> None:
        """Within a column the IAQI does not fall as the concentration rises (where it is computed)."""
        low, high = iaqi(key, min(a, b), edition), iaqi(key, max(a, b), edition)
        if low is not None and high is not None:
            assert 0 <= low <= high <= 500

    @pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True])
    def test_a_bad_concentration_is_refused(self, bad: float) -> None:
        """A negative, non-finite or boolean concentration is a ValueError."""
        with pytest.raises(ValueError, match="pm25_24h"):
            iaqi("pm25_24h", bad, "2012")

    def test_unknown_column_and_edition_are_refused(self) -> None:
        """An unknown column or edition is a ValueError naming the accepted ones."""
        with pytest.raises(ValueError, match="pm25_1h"):
            iaqi("pm25_1h", 10, "2012")
        with pytest.raises(ValueError, match="2013"):
            iaqi("pm25_24h", 10, "2013")


class TestAbove800:
    def test_so2_1h_above_800_is_not_computed_in_2012(self) -> None:
        """2012: SO2 1 h above 800 µg/m³ has no 1 h IAQI; at 800 it is 200."""
        assert iaqi("so2_1h", 800, "2012") == 200
        assert iaqi("so2_1h", 800.1, "2012") is None

    def test_so2_1h_above_800_counts_200_in_2026(self) -> None:
        """2026: SO2 1 h above 800 µg/m³ counts as IAQI 200."""
        assert iaqi("so2_1h", 800, "2026") == 200
        assert iaqi("so2_1h", 5000, "2026") == 200

    def test_o3_8h_above_800_is_not_computed_in_2012(self) -> None:
        """2012: O3 8 h above 800 µg/m³ has no 8 h IAQI; at 800 it is 300."""
        assert iaqi("o3_8h", 800, "2012") == 300
        assert iaqi("o3_8h", 801, "2012") is None

    def test_o3_8h_above_800_counts_300_in_2026(self) -> None:
        """2026: O3 8 h above 800 µg/m³ counts as IAQI 300."""
        assert iaqi("o3_8h", 801, "2026") == 300

    def test_hourly_2012_reports_so2_by_its_24h_mean(self) -> None:
        """2012 hourly: SO2 1 h above 800 is reported by the IAQI of so2_24h."""
        result = hourly_aqi({"so2": 900, "so2_24h": 200, "pm25": 75}, "2012")
        assert result.iaqi["so2"] == 108
        assert result.sub_indices["so2_1h"] is None
        assert result.aqi == 108
        assert result.primary_pollutants == ("so2",)
        assert any("so2_24h" in note for note in result.notes)

    def test_hourly_2012_without_so2_24h_cannot_compute_so2(self) -> None:
        """2012 hourly: SO2 1 h above 800 without so2_24h leaves SO2 not computable; the AQI comes from the rest."""
        result = hourly_aqi({"so2": 900, "pm25": 75}, "2012")
        assert result.iaqi == {"pm25": 100, "so2": None}
        assert result.aqi == 100
        assert result.to_json_dict()["iaqi"]["so2"] == "NA"

    def test_hourly_2026_counts_so2_as_200(self) -> None:
        """2026 hourly: SO2 1 h above 800 counts 200, and so2_24h is not used."""
        result = hourly_aqi({"so2": 900, "so2_24h": 2000}, "2026")
        assert result.iaqi["so2"] == 200
        assert result.aqi == 200
        assert result.ignored == ("so2_24h",)

    def test_daily_2012_reports_o3_by_its_1h_maximum(self) -> None:
        """2012 daily: O3 8 h above 800 is reported by the IAQI of the daily max 1 h mean."""
        result = daily_aqi({"o3_8h": 900, "o3_1h": 250, "pm25": 30}, "2012")
        assert result.iaqi["o3"] == 125  # 100 + 50 × 50/100
        assert result.sub_indices["o3_8h"] is None

    def test_daily_2012_without_o3_1h_cannot_compute_o3(self) -> None:
        """2012 daily: O3 8 h above 800 without o3_1h leaves O3 not computable."""
        result = daily_aqi({"o3_8h": 900, "pm25": 30}, "2012")
        assert result.iaqi["o3"] is None
        assert result.aqi == 43  # PM2.5: 50 × 30/35 = 42.9

    def test_daily_2026_counts_o3_as_300(self) -> None:
        """2026 daily: O3 8 h above 800 counts 300; o3_1h is not an indicator and is ignored."""
        result = daily_aqi({"o3_8h": 900, "o3_1h": 100}, "2026")
        assert result.iaqi["o3"] == 300
        assert result.ignored == ("o3_1h",)
        assert result.category == "重度污染"


class TestEditions:
    @pytest.mark.parametrize(
        ("day", "edition"),
        [(date(2026, 2, 28), "2012"), (date(2026, 3, 1), "2026"), (date(2013, 1, 1), "2012"),
         (datetime(2026, 3, 1, 0, 30, tzinfo=ZoneInfo("Asia/Shanghai")), "2026")],
    )
    def test_edition_in_force(self, day: date, edition: str) -> None:
        """HJ 633-2026 is in force from 2026-03-01; HJ 633-2012 before."""
        assert edition_in_force(day) == edition

    @pytest.mark.parametrize(
        ("values", "iaqi_2012", "iaqi_2026"),
        [({"pm25": 60}, 82, 100), ({"pm25": 75}, 100, 114), ({"pm10": 120}, 85, 100), ({"pm10": 150}, 100, 112)],
    )
    def test_pm_rows_differ_between_editions(self, values: dict[str, float], iaqi_2012: int, iaqi_2026: int) -> None:
        """The same PM concentration gives a higher IAQI under 2026 (IAQI 100 at 60 and 120, not 75 and 150)."""
        assert daily_aqi(values, "2012").aqi == iaqi_2012  # 50 + 50 × 25/40 = 81.25; 50 + 50 × 70/100
        assert daily_aqi(values, "2026").aqi == iaqi_2026
        assert hourly_aqi(values, "2026").aqi == iaqi_2026  # PM 1 h uses the 24 h breakpoints

    def test_gases_do_not_differ(self) -> None:
        """SO2, NO2, CO and O3 give the same sub-indices in both editions below 800 µg/m³."""
        values = {"so2": 300, "no2": 150, "co": 20, "o3": 250}
        # so2 50 + 50 × 150/350 = 71.4; no2 50 + 50 × 50/100; co 100 + 50 × 10/25; o3 100 + 50 × 50/100
        expected = {"so2_1h": 72, "no2_1h": 75, "co_1h": 120, "o3_1h": 125}
        assert hourly_aqi(values, "2012").sub_indices == expected
        assert hourly_aqi(values, "2026").sub_indices == expected
        daily = {"so2": 300, "no2": 150, "co": 20, "o3_8h": 200}
        assert daily_aqi(daily, "2012").sub_indices == daily_aqi(daily, "2026").sub_indices == {
            "so2_24h": 124, "no2_24h": 135, "co_24h": 180, "o3_8h": 137,
        }  # 100 + 50 × 150/325 = 123.1; 100 + 50 × 70/100; 150 + 50 × 6/10; 100 + 50 × 40/55 = 136.4


class TestOzoneInReports:
    def test_hourly_2012_takes_the_larger_of_o3_1h_and_8h(self) -> None:
        """2012 hourly: O3's IAQI is the larger of its 1 h and 8 h moving-mean sub-indices."""
        result = hourly_aqi({"o3": 180, "o3_8h": 180}, "2012")
        assert result.sub_indices == {"o3_1h": 75, "o3_8h": 119}
        assert result.iaqi == {"o3": 119}

    def test_hourly_2026_uses_only_o3_1h(self) -> None:
        """2026 hourly: only the 1 h mean is an indicator; o3_8h is listed as ignored."""
        result = hourly_aqi({"o3": 180, "o3_8h": 180}, "2026")
        assert result.iaqi == {"o3": 75}
        assert result.ignored == ("o3_8h",)

    def test_daily_2012_takes_the_larger_of_8h_and_1h_maxima(self) -> None:
        """2012 daily: O3's IAQI is the larger of the daily max 8 h and daily max 1 h sub-indices."""
        assert daily_aqi({"o3_8h": 100, "o3_1h": 250}, "2012").iaqi == {"o3": 125}
        assert daily_aqi({"o3_8h": 180, "o3_1h": 160}, "2012").iaqi == {"o3": 119}

    def test_daily_o3_needs_an_explicit_averaging(self) -> None:
        """In the daily report a bare `o3` is refused: it must be o3_8h or o3_1h."""
        with pytest.raises(ValueError, match="o3_8h"):
            daily_aqi({"o3": 100}, "2012")

    def test_no2_24h_and_co_24h_enter_no_sub_index(self) -> None:
        """no2_24h and co_24h are accepted in the hourly report but used by no rule."""
        result = hourly_aqi({"no2": 100, "no2_24h": 500, "co_24h": 50}, "2012")
        assert result.aqi == 50
        assert result.ignored == ("no2_24h", "co_24h")


class TestPollutants:
    def test_ties_give_several_primary_pollutants(self) -> None:
        """Two pollutants sharing the largest IAQI are both primary, in reading-name order."""
        assert daily_aqi({"pm10": 120, "pm25": 60, "so2": 10}, "2026").primary_pollutants == ("pm25", "pm10")
        assert hourly_aqi({"no2": 200, "pm25": 75}, "2012").primary_pollutants == ("pm25", "no2")

    def test_no_primary_pollutant_at_aqi_50(self) -> None:
        """At AQI 50 or below there is no primary pollutant."""
        result = daily_aqi({"pm25": 35, "pm10": 50}, "2012")
        assert result.aqi == 50
        assert result.primary_pollutants == ()

    def test_primary_pollutant_from_aqi_51(self) -> None:
        """From AQI 51 the pollutant with the largest IAQI is primary."""
        result = daily_aqi({"pm25": 35.1, "pm10": 50}, "2012")
        assert result.aqi == 51
        assert result.primary_pollutants == ("pm25",)

    def test_exceeding_pollutants_are_above_100(self) -> None:
        """Pollutants with an IAQI above 100 exceed; exactly 100 does not."""
        result = daily_aqi({"pm25": 75, "pm10": 151, "so2": 200, "no2": 10}, "2012")
        assert result.iaqi == {"pm25": 100, "pm10": 101, "so2": 108, "no2": 13}
        assert result.exceeding_pollutants == ("pm10", "so2")
        assert result.primary_pollutants == ("so2",)

    def test_aqi_is_the_largest_sub_index(self) -> None:
        """The AQI is the largest IAQI of all pollutants given."""
        result = hourly_aqi({"pm25": 20, "pm10": 40, "so2": 10, "no2": 300, "co": 1, "o3": 100}, "2012")
        assert result.aqi == 110  # NO2 1 h: 100 + 50 × 100/500
        assert set(result.iaqi) == set(POLLUTANTS)

    def test_unknown_input_is_refused(self) -> None:
        """An input name outside the report's list is a ValueError naming the accepted names."""
        with pytest.raises(ValueError, match=r"pm2\.5.*pm25"):
            hourly_aqi({"pm2.5": 10}, "2012")


class TestMissingData:
    def test_missing_pollutant_and_aqi_at_most_100_gives_na(self) -> None:
        """With a required pollutant missing and AQI at most 100, the AQI is NA and there is no primary."""
        result = daily_aqi({"pm25": 40}, "2012", required=POLLUTANTS)
        assert result.aqi is None
        assert result.iaqi == {"pm25": 57}  # 50 + 50 × 5/40 = 56.25
        assert result.missing == ("pm10", "so2", "no2", "co", "o3")
        assert (result.level, result.category, result.colour, result.primary_pollutants) == (None, None, None, ())
        assert result.to_json_dict()["aqi"] == "NA"

    def test_missing_pollutant_and_aqi_above_100_is_published(self) -> None:
        """With a required pollutant missing and AQI above 100, the AQI and primary pollutant are published."""
        result = daily_aqi({"pm25": 80}, "2012", required=POLLUTANTS)
        assert result.aqi == 107  # 100 + 50 × 5/40 = 106.25
        assert result.primary_pollutants == ("pm25",)

    def test_a_not_computable_sub_index_counts_as_missing(self) -> None:
        """A required pollutant given but not computable (SO2 1 h > 800, 2012) counts as missing."""
        result = hourly_aqi({"so2": 900, "pm25": 30}, "2012", required=("so2", "pm25"))
        assert result.missing == ("so2",)
        assert result.aqi is None

    def test_by_default_the_aqi_comes_from_what_is_given(self) -> None:
        """Without `required`, a lone pollutant gives the AQI."""
        assert daily_aqi({"pm25": 40}, "2012").aqi == 57

    def test_nothing_given_gives_na(self) -> None:
        """No concentration at all gives AQI NA."""
        assert hourly_aqi({}, "2026").aqi is None


class TestCategories:
    @pytest.mark.parametrize(
        ("aqi", "level", "name", "name_en", "colour"),
        [
            (0, 1, "优", "excellent", "#00E400"),
            (50, 1, "优", "excellent", "#00E400"),
            (51, 2, "良", "good", "#FFFF00"),
            (100, 2, "良", "good", "#FFFF00"),
            (101, 3, "轻度污染", "lightly polluted", "#FF7E00"),
            (150, 3, "轻度污染", "lightly polluted", "#FF7E00"),
            (151, 4, "中度污染", "moderately polluted", "#FF0000"),
            (200, 4, "中度污染", "moderately polluted", "#FF0000"),
            (201, 5, "重度污染", "heavily polluted", "#99004C"),
            (300, 5, "重度污染", "heavily polluted", "#99004C"),
            (301, 6, "严重污染", "severely polluted", "#7E0023"),
            (500, 6, "严重污染", "severely polluted", "#7E0023"),
        ],
    )
    def test_category_boundaries(self, aqi: int, level: int, name: str, name_en: str, colour: str) -> None:
        """Levels change above 50, 100, 150, 200 and 300, each with its category and colour."""
        category = category_for(aqi)
        assert (category.level, category.name, category.name_en, category.colour) == (level, name, name_en, colour)

    @pytest.mark.parametrize(
        ("pm25", "aqi", "level", "colour"),
        [(35, 50, 1, "#00E400"), (35.8, 51, 2, "#FFFF00"), (75, 100, 2, "#FFFF00"), (75.8, 101, 3, "#FF7E00"),
         (150, 200, 4, "#FF0000"), (151, 201, 5, "#99004C"), (250, 300, 5, "#99004C"), (251, 301, 6, "#7E0023")],
    )
    def test_result_carries_level_and_colour(self, pm25: float, aqi: int, level: int, colour: str) -> None:
        """A report's level and colour follow its AQI (PM2.5 2012 daily: 35.8 → 51, 75.8 → 101, 251 → 301)."""
        result = daily_aqi({"pm25": pm25}, "2012")
        assert (result.aqi, result.level, result.colour) == (aqi, level, colour)

    def test_negative_aqi_is_refused(self) -> None:
        """An AQI is never negative."""
        with pytest.raises(ValueError):
            category_for(-1)


class TestJson:
    def test_to_json_dict_is_json_safe(self) -> None:
        """The report converts to plain JSON with NA for what is not computable."""
        result = hourly_aqi({"so2": 900, "pm25": 75, "o3": 180, "o3_8h": 900}, "2012")
        data = json.loads(json.dumps(result.to_json_dict(), ensure_ascii=False))
        assert data == {
            "edition": "HJ 633-2012", "report": "hourly", "aqi": 100, "level": 2, "category": "良",
            "category_en": "good", "colour": "#FFFF00",
            "iaqi": {"pm25": 100, "so2": "NA", "o3": 75},
            "sub_indices": {"pm25_24h": 100, "so2_1h": "NA", "o3_1h": 75, "o3_8h": "NA"},
            "primary_pollutants": ["pm25"], "exceeding_pollutants": [], "missing": [], "ignored": [],
            "notes": data["notes"],
        }
        assert len(data["notes"]) == 2


class TestCommandLine:
    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = main(["aqi", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    def test_hourly_report(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`parkwatch aqi --edition 2012 pm25=75 no2=200` prints the hourly report with a tie for primary."""
        code, out, _ = self.run(capsys, "--edition", "2012", "pm25=75", "no2=200", "o3=100")
        data = json.loads(out)
        assert code == 0
        assert (data["aqi"], data["category"], data["report"]) == (100, "良", "hourly")
        assert data["iaqi"] == {"pm25": 100, "no2": 100, "o3": 32}
        assert data["primary_pollutants"] == ["pm25", "no2"]

    def test_daily_report(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--daily uses the 24 h rows: SO2 200 µg/m³ is 108, and o3_8h is the daily max 8 h."""
        code, out, _ = self.run(capsys, "--edition", "2026", "--daily", "so2=200", "o3_8h=180")
        data = json.loads(out)
        assert code == 0
        assert data["iaqi"] == {"so2": 108, "o3": 119}
        assert data["edition"] == "HJ 633-2026"
        assert data["exceeding_pollutants"] == ["so2", "o3"]

    def test_default_edition_is_the_one_in_force(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --edition the edition in force today is used."""
        monkeypatch.setattr("config.commands.aqi.today", lambda: date(2026, 2, 28))
        assert json.loads(self.run(capsys, "pm25=75")[1])["aqi"] == 100
        monkeypatch.setattr("config.commands.aqi.today", lambda: date(2026, 3, 1))
        assert json.loads(self.run(capsys, "pm25=75")[1])["aqi"] == 114

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["pm2.5=10"], "unknown input 'pm2.5'"),
            (["pm25"], "not NAME=VALUE"),
            (["=10"], "not NAME=VALUE"),
            (["pm25=abc"], "'abc' is not a number"),
            (["pm25=-1"], "not a finite, non-negative"),
            (["pm25=nan"], "not a finite, non-negative"),
            (["pm25=1", "pm25=2"], "given twice"),
            (["--daily", "o3=100"], "o3_8h"),
        ],
    )
    def test_bad_name_or_value_exits_2(self, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
        """A bad NAME or VALUE exits 2 with the reason on stderr and nothing on stdout."""
        code, out, err = self.run(capsys, "--edition", "2012", *argv)
        assert (code, out) == (2, "")
        assert message in err
