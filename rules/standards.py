"""GB 3095 ambient air quality limits: the 2012 edition and the two stages of the 2026 edition.

Pure data and look-ups, no I/O. Editions: "2012" (in force until 2026-02-28), "2026-transition"
(2026-03-01 .. 2030-12-31) and "2026-final" (from 2031-01-01); ``edition_for`` picks one by date.
Grade I applies to class-1 zones, grade II to class-2 zones; a chemical park is a class-2 zone, so
grade II is the default. Units: µg/m³, CO mg/m³ (``unit``). Gases at the reference state
(298.15 K, 1013.25 hPa), particulates at actual conditions (2018 amendment; GB 3095-2026 §4.3).

Averaging: "1h" (1-hour mean), "24h" (daily mean), "8h" (O3 daily maximum 8-hour mean), "annual",
"quarterly" (Pb only).

Every figure, grade I / grade II (sources after the table)::

    pollutant averaging  2012 [A]         2026-transition      2026-final           unit
    so2       annual     20 / 60          20 / 60 [B]          20 / 20 [B]          µg/m³
    so2       24h        50 / 150         50 / 150 [B]         50 / 50 [B]          µg/m³
    so2       1h         150 / 500        150 / 500 [B]        150 / 150 [B]        µg/m³
    no2       annual     40 / 40          40 / 40 [B]          30 / 30 [B]          µg/m³
    no2       24h        80 / 80          80 / 80 [B]          50 / 50 [B]          µg/m³
    no2       1h         200 / 200        200 / 200 [B]        200 / 200 [B]        µg/m³
    co        24h        4 / 4            4 / 4 [B]            4 / 4 [B]            mg/m³
    co        1h         10 / 10          10 / 10 [B]          10 / 10 [B]          mg/m³
    o3        8h         100 / 160        100 / 160 [B]        100 / 160 [B]        µg/m³
    o3        1h         160 / 200        160 / 200 [B]        160 / 200 [B]        µg/m³
    pm10      annual     40 / 70          40 / 60 [B]          20 / 50 [B]          µg/m³
    pm10      24h        50 / 150         50 / 120 [B]         50 / 100 [B]         µg/m³
    pm25      annual     15 / 35          15 [B] / 30 [C]      10 / 25 [C]          µg/m³
    pm25      24h        35 / 75          35 [B] / 60 [C]      25 / 50 [C]          µg/m³
    tsp       annual     80 / 200         80 / 200 [D]         80 / 200 [D]         µg/m³
    tsp       24h        120 / 300        120 / 300 [D]        120 / 300 [D]        µg/m³
    nox       annual     50 / 50          50 / 50 [B]          40 / 40 [B]          µg/m³
    nox       24h        100 / 100        100 / 100 [B]        70 / 70 [B]          µg/m³
    nox       1h         250 / 250        250 / 250 [B]        250 / 250 [B]        µg/m³
    pb        annual     0.5 / 0.5        0.5 / 0.5 [D]        0.5 / 0.5 [D]        µg/m³
    pb        quarterly  1 / 1            1 / 1 [D]            1 / 1 [D]            µg/m³
    bap       annual     0.001 / 0.001    0.001 / 0.001 [D]    0.001 / 0.001 [D]    µg/m³
    bap       24h        0.0025 / 0.0025  0.0025 / 0.0025 [D]  0.0025 / 0.0025 [D]  µg/m³

    [A] (every 2012 figure) GB 3095-2012 Tables 1 and 2, as reproduced on onxelh.cn/417/990/1193087 and
        in many codebases (domain.md §3.1); the IAQI 100 row of HJ 633-2012 agrees with grade II.
    [B] UNCONFIRMED: a single public limits library that says it was "checked item by item against the
        original" (domain.md §3.2). A second public codebase (a test of GB 3095-2026 limits by grade and
        stage) has the same figures, but may not be independent; not checked against the official PDF.
    [C] Confirmed by news (qzcns.com/hot/2026/0225/744319.html; haqqstyle.com): PM2.5 final 10/25 annual
        and 25/50 daily, transition grade II 30 annual and 60 daily.
    [D] UNCONFIRMED: "TSP, Pb, BaP as 2012" (domain.md §3.2, same single source as [B]).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Literal

EDITIONS = ("2012", "2026-transition", "2026-final")
CHOICES = ("2012", "2026")
POLLUTANTS = ("so2", "no2", "co", "o3", "pm10", "pm25", "tsp", "nox", "pb", "bap")
AVERAGINGS = ("1h", "24h", "8h", "annual", "quarterly")
GB3095_2026_FROM = date(2026, 3, 1)
GB3095_2026_FINAL_FROM = date(2031, 1, 1)

Grade = Literal[1, 2]


@dataclass(frozen=True)
class Limit:
    """One row of a GB 3095 table: the grade I and grade II limits of one pollutant and averaging time."""

    pollutant: str
    averaging: str
    grade1: float
    grade2: float
    source: str  # a key of the module docstring's source list, e.g. "B"; "UNCONFIRMED" is in the text there
    confirmed: bool

    def for_grade(self, grade: Grade) -> float:
        """The limit of grade 1 or 2."""
        return self.grade1 if grade == 1 else self.grade2


def _rows(source: str, confirmed: bool, *rows: tuple[str, str, float, float]) -> tuple[Limit, ...]:
    return tuple(Limit(p, a, g1, g2, source, confirmed) for p, a, g1, g2 in rows)


_OTHER_2012 = (  # TSP, Pb, BaP: unchanged in 2026 per domain.md §3.2 (UNCONFIRMED there)
    ("tsp", "annual", 80, 200), ("tsp", "24h", 120, 300),
    ("pb", "annual", 0.5, 0.5), ("pb", "quarterly", 1, 1),
    ("bap", "annual", 0.001, 0.001), ("bap", "24h", 0.0025, 0.0025),
)
_UNCHANGED_2026 = (  # CO and O3: "unchanged" in both stages (UNCONFIRMED, source B)
    ("co", "24h", 4, 4), ("co", "1h", 10, 10), ("o3", "8h", 100, 160), ("o3", "1h", 160, 200),
)

TABLES: Mapping[str, tuple[Limit, ...]] = MappingProxyType({
    "2012": _rows(
        "A", True,
        ("so2", "annual", 20, 60), ("so2", "24h", 50, 150), ("so2", "1h", 150, 500),
        ("no2", "annual", 40, 40), ("no2", "24h", 80, 80), ("no2", "1h", 200, 200),
        ("co", "24h", 4, 4), ("co", "1h", 10, 10), ("o3", "8h", 100, 160), ("o3", "1h", 160, 200),
        ("pm10", "annual", 40, 70), ("pm10", "24h", 50, 150), ("pm25", "annual", 15, 35), ("pm25", "24h", 35, 75),
        ("nox", "annual", 50, 50), ("nox", "24h", 100, 100), ("nox", "1h", 250, 250), *_OTHER_2012,
    ),
    "2026-transition": (
        *_rows(
            "B", False,
            ("so2", "annual", 20, 60), ("so2", "24h", 50, 150), ("so2", "1h", 150, 500),
            ("no2", "annual", 40, 40), ("no2", "24h", 80, 80), ("no2", "1h", 200, 200), *_UNCHANGED_2026,
            ("pm10", "annual", 40, 60), ("pm10", "24h", 50, 120),
            ("nox", "annual", 50, 50), ("nox", "24h", 100, 100), ("nox", "1h", 250, 250),
        ),
        # PM2.5: grade II confirmed by news [C]; grade I (15, 35) is single-source [B], UNCONFIRMED.
        *_rows("B+C", False, ("pm25", "annual", 15, 30), ("pm25", "24h", 35, 60)),
        *_rows("D", False, *_OTHER_2012),
    ),
    "2026-final": (
        *_rows(
            "B", False,
            ("so2", "annual", 20, 20), ("so2", "24h", 50, 50), ("so2", "1h", 150, 150),
            ("no2", "annual", 30, 30), ("no2", "24h", 50, 50), ("no2", "1h", 200, 200), *_UNCHANGED_2026,
            ("pm10", "annual", 20, 50), ("pm10", "24h", 50, 100),
            ("nox", "annual", 40, 40), ("nox", "24h", 70, 70), ("nox", "1h", 250, 250),
        ),
        *_rows("C", True, ("pm25", "annual", 10, 25), ("pm25", "24h", 25, 50)),
        *_rows("D", False, *_OTHER_2012),
    ),
})


def unit(pollutant: str) -> str:
    """The unit of a pollutant's limits: mg/m³ for CO, µg/m³ for the others."""
    _check(pollutant, POLLUTANTS, "pollutant")
    return "mg/m³" if pollutant == "co" else "µg/m³"


def limit_row(pollutant: str, averaging: str, edition: str) -> Limit | None:
    """The table row of a pollutant and averaging time, with its source; None if the standard has none."""
    _check(pollutant, POLLUTANTS, "pollutant")
    _check(averaging, AVERAGINGS, "averaging time")
    _check(edition, EDITIONS, "GB 3095 edition")
    return next((r for r in TABLES[edition] if (r.pollutant, r.averaging) == (pollutant, averaging)), None)


def limit(pollutant: str, averaging: str, edition: str, grade: Grade = 2) -> float | None:
    """The limit (µg/m³, CO mg/m³) of a pollutant for an averaging time, or None if the standard sets none.

    `averaging` is "1h", "24h", "8h" (O3 daily max 8 h), "annual" or "quarterly"; `grade` 1 or 2 (default 2,
    the grade of a chemical park). Unknown names raise ValueError.
    """
    if grade not in (1, 2) or isinstance(grade, bool):
        raise ValueError(f"grade must be 1 or 2, not {grade!r}")
    row = limit_row(pollutant, averaging, edition)
    return None if row is None else row.for_grade(grade)


def edition_for(day: date, choice: str | None = None) -> str:
    """The GB 3095 edition for a day: `choice` "2012" or "2026" (its stage by date), None for the one in force.

    "2026" gives "2026-transition" up to 2030-12-31 and "2026-final" from 2031-01-01 (also for days before
    2026-03-01, when the 2026 edition is chosen explicitly). A datetime counts by its own calendar date.
    """
    if isinstance(day, datetime):
        day = day.date()
    if choice is None:
        choice = "2026" if day >= GB3095_2026_FROM else "2012"
    _check(choice, CHOICES, "GB 3095 edition choice")
    if choice == "2012":
        return "2012"
    return "2026-final" if day >= GB3095_2026_FINAL_FROM else "2026-transition"


def _check(value: str, accepted: tuple[str, ...], what: str) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {what} {value!r}; one of {', '.join(accepted)}")
