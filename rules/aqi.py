"""HJ 633 air quality index: IAQI per pollutant, AQI, category, primary and exceeding pollutants.

Pure computation, no I/O. Two editions: HJ 633-2012 (until 2026-02-28) and HJ 633-2026 (from 2026-03-01,
see ``edition_in_force``). Sources are in the shared domain notes (domain.md §2); figures marked
UNCONFIRMED there are used and marked here.

Breakpoints (Table 1 of 2012 / Table 3 of 2026; µg/m³, CO mg/m³). The concentration in each column is the
one at which the IAQI of the first column is reached::

    IAQI  so2_24h so2_1h no2_24h no2_1h pm10_24h co_24h co_1h o3_1h o3_8h pm25_24h
       0        0      0       0      0        0      0     0     0     0        0
      50       50    150      40    100       50      2     5   160   100       35
     100      150    500      80    200  150|120      4    10   200   160    75|60
     150      475    650     180    700      250     14    35   300   215      115
     200      800    800     280   1200      350     24    60   400   265      150
     300     1600      -     565   2340      420     36    90   800   800      250
     400     2100      -     750   3090      500     48   120  1000     -      350
     500     2620      -     940   3840      600     60   150  1200     -      500

    a|b: 2012 value | 2026 value. The 2026 edition changes only the IAQI 100 row of PM10 and PM2.5
    (domain.md §2.6, UNCONFIRMED there; the same figures are in two public transcriptions of the 2026
    text: jialeyu0888-code/hj633-aqi references/breakpoints.json and the caiyunapp/aqi-hub v0.3 README).
    The SO2 24 h column is 50/150/475/800/1600/2100/2620, not the 1 h column that caiyunapp/aqi-hub
    repeats by mistake (domain.md §2.5).

Rules that differ between the editions, and the reading taken of each:

    rule                          2012 (domain.md §2.1 notes)              2026 (domain.md §2.6, UNCONFIRMED)
    SO2 1 h > 800 µg/m³           no 1 h IAQI; the hourly report uses      IAQI 200 ("IAQI 按 200 计")
                                  the IAQI of so2_24h, if given
    O3 8 h > 800 µg/m³            no 8 h IAQI; O3 is reported by its       IAQI 300 ("IAQI 按 300 计")
                                  1 h IAQI
    hourly report (实时报), O3    o3 (1 h) and o3_8h (8 h moving mean):    o3 (1 h) only; o3_8h is ignored
                                  the larger IAQI
    daily report (日报), O3       o3_8h (daily max 8 h) and o3_1h          o3_8h only; o3_1h is ignored
                                  (daily max 1 h): the larger IAQI
    rounding                      up (ceil); UNCONFIRMED for 2012          up (ceil), HJ 633-2026 §4.2.6

The O3 rows of the two reports are not in domain.md. For 2012 they follow the Shenzhen ecology bureau's
answer (meeb.sz.gov.cn post_12340768: the real-time report has nine indicators, among them the O3 8 h
moving mean) and the go-aqi hourly ``Calc``, which takes O3_1H and O3_8H alike; the 2012 daily report's
O3 daily max 1 h is a recollection of HJ 633-2012 §5 (UNCONFIRMED), supported by CNEMC's published
field set (o3_24h "臭氧日最大1小时平均" beside o3_8h_24h). For 2026 they follow the transcription of
HJ 633-2026 §4.2.2/§4.2.3 (six indicators each; UNCONFIRMED: not checked against the official PDF).
An input that an edition does not use is listed in ``AqiResult.ignored``; no2_24h and co_24h (contract §7)
enter no sub-index in either edition: HJ 633 has no fallback rule for NO2 or CO.

Exceeding pollutants (IAQI > 100) are reported for both editions; HJ 633-2026 dropped the definition
(per the transcription above), so for 2026 the field is ParkWatch's own, equal to "IAQI above 100".

Missing data (HJ 633-2026 §5.3.1; UNCONFIRMED for 2012, applied to both): when ``required`` names a
pollutant without a computable IAQI and the AQI is at most 100, the AQI is "NA" (None) and no primary
pollutant is given; above 100 the AQI and primary pollutants are published.

Concentrations are taken exactly as given (the decimal text of the float): HJ 633-2026 also asks that
concentrations be rounded (GB/T 8170) before the IAQI is computed; that step is left to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal

EDITIONS = ("2012", "2026")
EDITION_2026_FROM = date(2026, 3, 1)
IAQI_STEPS = (0, 50, 100, 150, 200, 300, 400, 500)
POLLUTANTS = ("pm25", "pm10", "so2", "no2", "co", "o3")  # reading names of contract §2, in output order

Report = Literal["hourly", "daily"]


@dataclass(frozen=True)
class Column:
    """One column of the breakpoint table: concentrations at IAQI 0, 50, 100, ... and what lies beyond.

    `above_top` is the IAQI of a concentration above the last breakpoint: 500 for complete columns,
    None where the table says not to compute it (2012), or the fixed value of the 2026 notes.
    """

    key: str
    breakpoints: tuple[int, ...]
    above_top: int | None = 500

    def __post_init__(self) -> None:
        steps = self.breakpoints
        if not 2 <= len(steps) <= len(IAQI_STEPS) or steps[0] != 0 or list(steps) != sorted(set(steps)):
            raise ValueError(f"{self.key}: breakpoints must rise strictly from 0, at most 8 of them")

    def iaqi(self, concentration: Fraction) -> int | None:
        """The IAQI of an exact, non-negative concentration, rounded up."""
        for i in range(1, len(self.breakpoints)):
            if concentration <= self.breakpoints[i]:
                lo, hi = self.breakpoints[i - 1], self.breakpoints[i]
                span = IAQI_STEPS[i] - IAQI_STEPS[i - 1]
                return math.ceil(IAQI_STEPS[i - 1] + span * (concentration - lo) / (hi - lo))
        return self.above_top


def _columns(*columns: Column) -> Mapping[str, Column]:
    return MappingProxyType({column.key: column for column in columns})


_COMMON = (
    Column("so2_24h", (0, 50, 150, 475, 800, 1600, 2100, 2620)),  # not the 1 h row (aqi-hub bug, §2.5)
    Column("no2_24h", (0, 40, 80, 180, 280, 565, 750, 940)),
    Column("no2_1h", (0, 100, 200, 700, 1200, 2340, 3090, 3840)),
    Column("co_24h", (0, 2, 4, 14, 24, 36, 48, 60)),
    Column("co_1h", (0, 5, 10, 35, 60, 90, 120, 150)),
    Column("o3_1h", (0, 160, 200, 300, 400, 800, 1000, 1200)),
)

TABLES: Mapping[str, Mapping[str, Column]] = MappingProxyType({
    "2012": _columns(
        *_COMMON,
        Column("so2_1h", (0, 150, 500, 650, 800), above_top=None),  # note 2: use the 24 h IAQI
        Column("o3_8h", (0, 100, 160, 215, 265, 800), above_top=None),  # note 3: use the 1 h IAQI
        Column("pm10_24h", (0, 50, 150, 250, 350, 420, 500, 600)),
        Column("pm25_24h", (0, 35, 75, 115, 150, 250, 350, 500)),
    ),
    "2026": _columns(
        *_COMMON,
        Column("so2_1h", (0, 150, 500, 650, 800), above_top=200),  # UNCONFIRMED: "IAQI 按 200 计"
        Column("o3_8h", (0, 100, 160, 215, 265, 800), above_top=300),  # UNCONFIRMED: "IAQI 按 300 计"
        Column("pm10_24h", (0, 50, 120, 250, 350, 420, 500, 600)),  # UNCONFIRMED: 120 (was 150)
        Column("pm25_24h", (0, 35, 60, 115, 150, 250, 350, 500)),  # UNCONFIRMED: 60 (was 75)
    ),
})


@dataclass(frozen=True)
class Category:
    """One AQI level of HJ 633 Table 2 (2012) / Table 1 (2026), with its colour (Appendix A)."""

    level: int
    upper: int | None  # highest AQI of the level; None for the open top level
    name: str
    name_en: str
    colour_name: str
    colour: str  # RGB hex


CATEGORIES = (
    Category(1, 50, "优", "excellent", "green 绿色", "#00E400"),
    Category(2, 100, "良", "good", "yellow 黄色", "#FFFF00"),
    Category(3, 150, "轻度污染", "lightly polluted", "orange 橙色", "#FF7E00"),
    Category(4, 200, "中度污染", "moderately polluted", "red 红色", "#FF0000"),
    Category(5, 300, "重度污染", "heavily polluted", "purple 紫色", "#99004C"),
    Category(6, None, "严重污染", "severely polluted", "maroon 褐红色", "#7E0023"),
)


def category_for(aqi: int) -> Category:
    """The level, category and colour of an AQI (0-50 优, 51-100 良, ..., above 300 严重污染)."""
    if aqi < 0:
        raise ValueError(f"an AQI is not negative: {aqi}")
    return next(c for c in CATEGORIES if c.upper is None or aqi <= c.upper)


def edition_in_force(day: date) -> str:
    """The HJ 633 edition in force on a day: "2026" from 2026-03-01, "2012" before.

    A datetime counts by its own calendar date: convert it to the park's time zone first.
    """
    if isinstance(day, datetime):
        day = day.date()
    return "2026" if day >= EDITION_2026_FROM else "2012"


def iaqi(pollutant_key: str, concentration: float, edition: str) -> int | None:
    """The IAQI of one column ("so2_1h", "pm25_24h", ...) of an edition's table, rounded up.

    500 above the top breakpoint; None where the table says not to compute (2012: SO2 1 h or O3 8 h above
    800 µg/m³); 200 and 300 there in 2026. A negative or non-finite concentration is a ValueError.
    """
    table = _table(edition)
    if pollutant_key not in table:
        raise ValueError(f"unknown IAQI column {pollutant_key!r}; one of {', '.join(sorted(table))}")
    return table[pollutant_key].iaqi(_exact(pollutant_key, concentration))


@dataclass(frozen=True)
class AqiResult:
    """An hourly (实时报) or daily (日报) AQI report.

    `iaqi` holds one sub-index per pollutant given (None: given but not computable); `sub_indices` the
    IAQI of each table column that was computed. `aqi` is None ("NA") when nothing is computable, or
    when a required pollutant is missing and the AQI is at most 100. `level`, `category` and `colour`
    follow `aqi`. `ignored` lists inputs this edition and report do not use; `notes` say which special
    rule was applied.
    """

    edition: str
    report: Report
    iaqi: Mapping[str, int | None]
    sub_indices: Mapping[str, int | None]
    aqi: int | None
    primary_pollutants: tuple[str, ...] = ()
    exceeding_pollutants: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def category_info(self) -> Category | None:
        """The level, category and colour of the AQI; None when the AQI is NA."""
        return None if self.aqi is None else category_for(self.aqi)

    @property
    def level(self) -> int | None:
        """1 (优) to 6 (严重污染); None when the AQI is NA."""
        return None if self.category_info is None else self.category_info.level

    @property
    def category(self) -> str | None:
        """优, 良, 轻度污染, 中度污染, 重度污染 or 严重污染."""
        return None if self.category_info is None else self.category_info.name

    @property
    def category_en(self) -> str | None:
        """The category in English (excellent ... severely polluted)."""
        return None if self.category_info is None else self.category_info.name_en

    @property
    def colour(self) -> str | None:
        """The category's colour as RGB hex (#00E400 ... #7E0023)."""
        return None if self.category_info is None else self.category_info.colour

    def to_json_dict(self) -> dict[str, Any]:
        """The report as JSON-safe values (the output of `parkwatch aqi`)."""
        return {
            "edition": f"HJ 633-{self.edition}",
            "report": self.report,
            "aqi": "NA" if self.aqi is None else self.aqi,
            "level": self.level,
            "category": self.category,
            "category_en": self.category_en,
            "colour": self.colour,
            "iaqi": {name: ("NA" if value is None else value) for name, value in self.iaqi.items()},
            "sub_indices": {key: ("NA" if value is None else value) for key, value in self.sub_indices.items()},
            "primary_pollutants": list(self.primary_pollutants),
            "exceeding_pollutants": list(self.exceeding_pollutants),
            "missing": list(self.missing),
            "ignored": list(self.ignored),
            "notes": list(self.notes),
        }


HOURLY_INPUTS = ("pm25", "pm10", "so2", "no2", "co", "o3", "o3_8h", "so2_24h", "no2_24h", "co_24h")
DAILY_INPUTS = ("pm25", "pm10", "so2", "no2", "co", "o3_8h", "o3_1h")
_UNUSED: Mapping[str, str] = MappingProxyType({  # why an input given may enter no sub-index
    "o3_8h": "not an indicator of the HJ 633-2026 hourly report",
    "o3_1h": "not an indicator of the HJ 633-2026 daily report",
    "so2_24h": "used only by HJ 633-2012, for an SO2 1 h mean above 800 µg/m³",
    "no2_24h": "no rule of HJ 633 uses it in the hourly report",
    "co_24h": "no rule of HJ 633 uses it in the hourly report",
})


def hourly_aqi(
    concentrations: Mapping[str, float], edition: str, *, required: Collection[str] | None = None
) -> AqiResult:
    """The hourly report (实时报) from 1-hour means, by reading name (HOURLY_INPUTS).

    pm25 and pm10 (1 h) use the 24 h breakpoints; so2, no2, co and o3 the 1 h rows. o3_8h is the 8 h
    moving mean (2012 only), so2_24h the 2012 fallback for SO2 above 800 µg/m³. See the module docstring.
    """
    calc = _Calc(edition, _inputs(concentrations, HOURLY_INPUTS, "hourly"))
    for name, key in (("pm25", "pm25_24h"), ("pm10", "pm10_24h"), ("no2", "no2_1h"), ("co", "co_1h")):
        calc.direct(name, key)
    calc.so2_hourly()
    calc.o3(one_hour="o3", eight_hour="o3_8h" if calc.edition == "2012" else None)
    return calc.result("hourly", required)


def daily_aqi(
    concentrations: Mapping[str, float], edition: str, *, required: Collection[str] | None = None
) -> AqiResult:
    """The daily report (日报) from 24 h means of pm25, pm10, so2, no2, co and O3's daily maxima.

    o3_8h is the daily maximum 8 h moving mean; o3_1h the daily maximum 1 h mean (2012 only, also the
    2012 fallback for O3 8 h above 800 µg/m³). See the module docstring.
    """
    calc = _Calc(edition, _inputs(concentrations, DAILY_INPUTS, "daily"))
    for name in ("pm25", "pm10", "so2", "no2", "co"):
        calc.direct(name, f"{name}_24h")
    calc.o3(one_hour="o3_1h" if calc.edition == "2012" else None, eight_hour="o3_8h")
    return calc.result("daily", required)


class _Calc:
    """Collects the sub-indices of one report; lives only inside one call of hourly_aqi or daily_aqi."""

    def __init__(self, edition: str, values: Mapping[str, float]) -> None:
        self.edition = edition
        self.table = _table(edition)
        self.values = values
        self.iaqi: dict[str, int | None] = {}
        self.sub_indices: dict[str, int | None] = {}
        self.used: set[str] = set()
        self.notes: list[str] = []

    def column(self, key: str, name: str) -> int | None:
        """The IAQI of input `name` in column `key`, recorded as a sub-index."""
        self.used.add(name)
        self.sub_indices[key] = value = self.table[key].iaqi(_exact(name, self.values[name]))
        return value

    def direct(self, name: str, key: str) -> None:
        if name in self.values:
            self.iaqi[name] = self.column(key, name)

    def so2_hourly(self) -> None:
        if "so2" not in self.values:
            return
        self.iaqi["so2"] = self.column("so2_1h", "so2")
        if self.values["so2"] <= 800:
            return
        if self.edition == "2026":
            self.notes.append("so2: 1 h mean above 800 µg/m³, IAQI counted as 200 (HJ 633-2026 Table 3 note b)")
        elif "so2_24h" in self.values:
            self.iaqi["so2"] = self.column("so2_24h", "so2_24h")
            self.notes.append("so2: 1 h mean above 800 µg/m³, reported by the IAQI of so2_24h (HJ 633-2012 note 2)")
        else:
            self.notes.append("so2: 1 h mean above 800 µg/m³ and no so2_24h: not computable (HJ 633-2012 note 2)")

    def o3(self, *, one_hour: str | None, eight_hour: str | None) -> None:
        """O3's IAQI: the larger of the 1 h and 8 h sub-indices that the report uses and that are given."""
        wanted = {"o3_1h": one_hour, "o3_8h": eight_hour}
        given = {key: name for key, name in wanted.items() if name is not None and name in self.values}
        if not given:
            return
        computed = [value for key, name in given.items() if (value := self.column(key, name)) is not None]
        self.iaqi["o3"] = max(computed, default=None)
        if "o3_8h" in given and self.values[given["o3_8h"]] > 800:
            self.notes.append(self._o3_note("o3_1h" in given))

    def _o3_note(self, have_one_hour: bool) -> str:
        if self.edition == "2026":
            return "o3: 8 h mean above 800 µg/m³, IAQI counted as 300 (HJ 633-2026 Table 3 note c)"
        if have_one_hour:
            return "o3: 8 h mean above 800 µg/m³, reported by the 1 h IAQI (HJ 633-2012 note 3)"
        return "o3: 8 h mean above 800 µg/m³ and no 1 h mean: not computable (HJ 633-2012 note 3)"

    def result(self, report: Report, required: Collection[str] | None) -> AqiResult:
        ignored = tuple(name for name in self.values if name not in self.used)
        self.notes += [f"{name}: ignored, {_UNUSED[name]}" for name in ignored]
        ordered = {name: self.iaqi[name] for name in POLLUTANTS if name in self.iaqi}
        known = {name: value for name, value in ordered.items() if value is not None}
        aqi = max(known.values(), default=None)
        missing = tuple(name for name in _required(required) if name not in known)
        if aqi is not None and missing and aqi <= 100:
            aqi = None
            self.notes.append(f"AQI is NA: {', '.join(missing)} missing and AQI not above 100 (HJ 633-2026 §5.3.1)")
        return AqiResult(
            edition=self.edition,
            report=report,
            iaqi=MappingProxyType(ordered),
            sub_indices=MappingProxyType(dict(self.sub_indices)),
            aqi=aqi,
            primary_pollutants=_primary(known, aqi),
            exceeding_pollutants=tuple(name for name, value in known.items() if value > 100),
            missing=missing,
            ignored=ignored,
            notes=tuple(self.notes),
        )


def _primary(known: Mapping[str, int], aqi: int | None) -> tuple[str, ...]:
    """The pollutants with the largest IAQI when the AQI is above 50 (ties give several)."""
    if aqi is None or aqi <= 50:
        return ()
    return tuple(name for name, value in known.items() if value == aqi)


def _required(required: Collection[str] | None) -> tuple[str, ...]:
    if required is None:
        return ()
    unknown = set(required) - set(POLLUTANTS)
    if unknown:
        raise ValueError(f"unknown required pollutant(s) {', '.join(sorted(unknown))}; one of {', '.join(POLLUTANTS)}")
    return tuple(name for name in POLLUTANTS if name in required)


def _table(edition: str) -> Mapping[str, Column]:
    try:
        return TABLES[edition]
    except KeyError:
        raise ValueError(f"unknown HJ 633 edition {edition!r}; one of {', '.join(EDITIONS)}") from None


def _inputs(concentrations: Mapping[str, float], accepted: tuple[str, ...], report: str) -> dict[str, float]:
    unknown = [name for name in concentrations if name not in accepted]
    if unknown:
        hint = " (give O3 as o3_8h and/or o3_1h)" if "o3" in unknown and report == "daily" else ""
        raise ValueError(f"unknown input {unknown[0]!r} for the {report} report{hint}; one of {', '.join(accepted)}")
    for name, value in concentrations.items():
        _exact(name, value)
    return {name: concentrations[name] for name in accepted if name in concentrations}


def _exact(name: str, value: float) -> Fraction:
    """The concentration as an exact fraction of its decimal text, so that 2.2 is 11/5 and not 2.2000...18."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: concentration must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: concentration must be finite and not negative, not {value!r}")
    return Fraction(value) if isinstance(value, int) else Fraction(repr(float(value)))
