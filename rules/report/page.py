"""The report as one self-contained HTML page: inline CSS and SVG (``rules.report.svg``), no script, no
font, image or style sheet from elsewhere, so the file can be mailed, archived and opened offline.

Layout, top to bottom: a header (park, date, editions); cards at a glance (each station's daily AQI in
its HJ 633 colour, gate traffic, alerts); the HJ 633 colour legend; per station the hourly AQI strip and
six small line panels (PM2.5, PM10, O3, NO2, SO2, CO) with the GB 3095 limits; then the tables: daily
means and AQI, hours over limits, alerts, gate traffic with a chart, hazmat stays with a timeline.
Labels are Chinese with English beside them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from html import escape
from typing import Any

import pandas as pd

from rules import aqi as hj633
from rules import standards
from rules.report import svg
from rules.report.daily import DailyReport

PANELS = ("pm25", "pm10", "o3", "no2", "so2", "co")
NAMES = {"pm25": ("PM2.5", "细颗粒物"), "pm10": ("PM10", "可吸入颗粒物"), "o3": ("O₃", "臭氧"),
         "no2": ("NO₂", "二氧化氮"), "so2": ("SO₂", "二氧化硫"), "co": ("CO", "一氧化碳")}
COLOURS = {"pm25": "#6d28d9", "pm10": "#a16207", "o3": "#0369a1", "no2": "#be185d", "so2": "#15803d",
           "co": "#475569"}
DAILY_LIMIT = "#d97706"  # 24 h and 8 h limits; 1 h limits in svg.LIMIT_RED
SEVERITY_COLOURS = {"info": "#2563eb", "warning": "#d97706", "major": "#ea580c", "critical": "#b91c1c"}
STATE_NAMES = {"pending": ("待定", "#6b7280"), "firing": ("告警中", "#b91c1c"),
               "acknowledged": ("已确认", "#d97706"), "resolved": ("已恢复", "#15803d")}
WEEKDAYS = ("星期一 Monday", "星期二 Tuesday", "星期三 Wednesday", "星期四 Thursday", "星期五 Friday",
            "星期六 Saturday", "星期日 Sunday")
GB3095_NAMES = {"2012": "GB 3095-2012", "2026-transition": "GB 3095-2026 过渡阶段 transition",
                "2026-final": "GB 3095-2026 最终阶段 final"}


def render_html(report: DailyReport) -> str:
    """The whole page as text (UTF-8)."""
    title = f"{report.park} · {report.day.isoformat()} · 园区日报 Daily report"
    body = [
        _header(report), "<main>", _overview(report), _legend(),
        *(_station(report, station) for station in report.stations),
        _daily_table(report), _limits_table(report), _alerts(report), _gates(report), _method(report), "</main>",
    ]
    return (f'<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{escape(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


# --- header and overview --------------------------------------------------------------------------------


def _header(r: DailyReport) -> str:
    chips = [f"时区 {r.timezone}", f"HJ 633-{r.aqi_edition}", f"{GB3095_NAMES.get(r.gb3095_edition)} · 二级 grade II"]
    return (
        '<header><div class="wrap">'
        '<div class="eyebrow">ParkWatch · 化工园区环境与门禁日报 · Daily air-quality and gate report</div>'
        f'<h1>园区 <span class="park">{escape(r.park)}</span></h1>'
        f'<div class="date">{r.day.isoformat()} <span>{WEEKDAYS[r.day.weekday()]}</span></div>'
        f'<div class="chips">{"".join(f"<span>{escape(c)}</span>" for c in chips)}</div>'
        "</div></header>"
    )


def _overview(r: DailyReport) -> str:
    cards = [_station_card(r, row) for row in r.aqi.to_dict("records")]
    cards += [_traffic_card(r), _alert_card(r)]
    return _section("概览", "At a glance", f'<div class="cards">{"".join(cards)}</div>', css="overview")


def _station_card(r: DailyReport, row: dict[str, Any]) -> str:
    capture = r.daily.loc[r.daily["station"] == row["station"], "capture"]
    low = f"{capture.min():.0%}" if len(capture) else "–"
    colour = row["colour"] if _present(row["colour"]) else "#9ca3af"
    if _present(row["aqi"]):
        big, name = str(int(row["aqi"])), f'{row["category"]} <span>{escape(str(row["category_en"]))}</span>'
        primary = _pollutants(row["primary"]) or "无 none"
    else:
        big, name = "NA", "无法评价 <span>not rated</span>"
        primary = f"缺 missing {_pollutants(row['missing'])}" if row["missing"] else "–"
    return (
        f'<a class="card aqi-card" href="#station-{escape(row["station"])}">'
        f'<div class="band" style="background:{colour};color:{svg.text_colour(colour)}">'
        f'<div class="label">站点 {escape(row["station"])} · 日 AQI</div><div class="big">{big}</div>'
        f'<div class="cat">{name}</div></div>'
        f'<div class="facts"><div>首要污染物 <b>{primary}</b></div><div>最低捕获率 min capture <b>{low}</b></div>'
        "</div></a>"
    )


def _traffic_card(r: DailyReport) -> str:
    vehicles = r.traffic[r.traffic["vehicle_class"] != "person"]
    stays = r.stays
    return (
        '<div class="card plain"><div class="label">车辆 Vehicles</div>'
        f'<div class="big pair"><span>{int(vehicles["entries"].sum())}<small> 进 in</small></span>'
        f'<span>{int(vehicles["exits"].sum())}<small> 出 out</small></span></div>'
        f'<div class="facts"><div>危化品停留 hazmat stays <b>{len(stays)}</b></div>'
        f'<div>超时 overstays <b class="{"bad" if stays["overstay"].any() else ""}">'
        f'{int(stays["overstay"].sum())}</b> · 24:00 在园 inside <b>{int(stays["inside"].sum())}</b></div>'
        f'<div>拒绝通行 denied <b>{int(r.traffic["denied"].sum())}</b></div></div></div>'
    )


def _alert_card(r: DailyReport) -> str:
    counts = r.alerts["severity"].value_counts()
    chips = "".join(f'<span class="sev" style="background:{c}">{escape(s)} {counts[s]}</span>'
                    for s, c in SEVERITY_COLOURS.items() if s in counts)
    return (f'<a class="card plain" href="#alerts"><div class="label">告警 Alerts</div>'
            f'<div class="big">{len(r.alerts)}</div><div class="facts">{chips or "无告警 none"}</div></a>')


def _legend() -> str:
    items = []
    low = 0
    for c in hj633.CATEGORIES:
        span = f"{low}–{c.upper}" if c.upper is not None else f"&gt;{low - 1}"
        items.append(f'<span class="chip" style="background:{c.colour};color:{svg.text_colour(c.colour)}">'
                     f"<b>{span}</b> {c.name} {escape(c.name_en)}</span>")
        low = (c.upper or 0) + 1
    none = (f'<span class="chip" style="background:{svg.NO_DATA};color:{svg.MUTED}">'
            "<b>–</b> 无有效数据 no valid data</span>")
    return f'<div class="legend"><span class="what">HJ 633 AQI 类别 categories</span>{"".join(items)}{none}</div>'


# --- stations -------------------------------------------------------------------------------------------


def _station(r: DailyReport, station: str) -> str:
    hours = r.hourly[r.hourly["station"] == station].sort_values("hour")
    row = r.aqi[r.aqi["station"] == station].iloc[0]
    badge = (f'<span class="pill" style="background:{row["colour"]};color:{svg.text_colour(row["colour"])}">'
             f'日 AQI {int(row["aqi"])} · {row["category"]}</span>') if _present(row["aqi"]) else \
        '<span class="pill na">日 AQI NA</span>'
    strip = svg.aqi_strip([_cell(h) for h in hours.to_dict("records")], label=f"{station} hourly AQI")
    panels = "".join(_panel(r, station, p, hours) for p in PANELS)
    body = (f'<h3>逐时 AQI <span class="en">Hourly AQI (实时报), by the hour it starts; hover a cell for details'
            f'</span></h3>{strip}'
            f'<h3>逐时浓度 <span class="en">Hourly means with the GB 3095 limits; red dots: hours over the '
            f'1 h limit</span></h3><div class="panels">{panels}</div>')
    return _section(f"站点 {station}", f"Station {station}", body, anchor=f"station-{station}", extra=badge)


def _cell(hour: dict[str, Any]) -> tuple[int | None, str | None, str]:
    start = hour["hour"]
    span = f"{start:%H:%M}–{start + timedelta(hours=1):%H:%M}"
    if not _present(hour["aqi"]):
        return None, None, f"{span} 无有效数据 no valid data"
    primary = _pollutants(hour["primary"], plain=True) or "–"
    tip = f"{span} AQI {int(hour['aqi'])} {hour['category']} {hour['category_en']} · 首要 primary {primary}"
    return int(hour["aqi"]), str(hour["colour"]), tip


def _panel(r: DailyReport, station: str, pollutant: str, hours: pd.DataFrame) -> str:
    symbol, name_zh = NAMES[pollutant]
    unit = standards.unit(pollutant)
    daily = r.daily[(r.daily["station"] == station) & (r.daily["pollutant"] == pollutant)]
    caption = f'<b style="color:{COLOURS[pollutant]}">{symbol}</b> {name_zh} <span class="unit">{unit}</span>'
    if daily.empty:
        return (f'<figure class="panel empty"><figcaption>{caption}</figcaption>'
                '<div class="nodata">未监测 not measured</div></figure>')
    d = daily.iloc[0]
    state = "" if d["valid"] else ' <span class="bad">无效 invalid</span>'
    hours_text = f'{int(d["valid_hours"])}/{_day_hours(r)} h{state}'
    stat = f'日均 daily {_number(d["mean"], pollutant)} · {hours_text}'
    if pollutant == "o3":  # O3's daily value is its daily maximum 8 h mean
        mda8 = r.aqi.loc[r.aqi["station"] == station, "o3_8h"].iloc[0]
        stat = f'日最大 8 h max {_number(mda8, "o3")} · {hours_text}'
    series = [svg.Series(_values(hours[pollutant]), COLOURS[pollutant], symbol)]
    limits, over = _limits(r, pollutant)
    if pollutant == "o3":
        series.append(svg.Series(_values(hours["o3_8h"]), "#0c4a6e", "O₃ 8 h", dashed=True, area=False))
    chart = svg.line_panel(series, limits, over=over, unit=unit, label=f"{station} {symbol} hourly means")
    key = '<div class="key"><i class="solid"></i>1 h 均值 hourly mean<i class="dash"></i>8 h 滑动 moving</div>' \
        if pollutant == "o3" else ""
    return (f'<figure class="panel"><figcaption>{caption}<span class="stat">{stat}</span></figcaption>{chart}{key}'
            "</figure>")


def _limits(r: DailyReport, pollutant: str) -> tuple[list[svg.LimitLine], float | None]:
    """The limit lines of a panel: the 1 h limit, else the 24 h one; O3 also its 8 h limit."""
    one_hour = standards.limit(pollutant, "1h", r.gb3095_edition)
    lines = []
    if one_hour is not None:
        lines.append(svg.LimitLine(one_hour, f"1 h 限值 {one_hour:g}"))
    if pollutant == "o3":
        eight = standards.limit("o3", "8h", r.gb3095_edition)
        if eight is not None:
            lines.append(svg.LimitLine(eight, f"8 h 限值 {eight:g}", DAILY_LIMIT))
    elif one_hour is None and (day := standards.limit(pollutant, "24h", r.gb3095_edition)) is not None:
        lines.append(svg.LimitLine(day, f"24 h 限值 {day:g} (日均 daily)", DAILY_LIMIT))
    return lines, one_hour


def _day_hours(r: DailyReport) -> int:
    return int(r.hourly.groupby("station").size().max()) if not r.hourly.empty else 24


# --- tables ---------------------------------------------------------------------------------------------


def _daily_table(r: DailyReport) -> str:
    if r.aqi.empty:
        return _section("日均值与 AQI", "Daily means and AQI", _nothing("当日无空气质量数据 no air-quality data"))
    head = ["站点<br><small>Station</small>", "日 AQI", "类别<br><small>Category</small>",
            "首要污染物<br><small>Primary</small>", *(_pollutant_head(p) for p in ("pm25", "pm10", "so2", "no2", "co")),
            "O₃ 8 h<br><small>日最大 max</small>", "O₃ 1 h<br><small>日最大 max</small>"]
    rows = [_daily_row(r, row) for row in r.aqi.to_dict("records")]
    note = ('<p class="note">日均值为有效小时均值的平均，有效小时 ≥ 20 为有效（GB 3095）；'
            "小字：分指数 IAQI 与有效小时数。"
            "灰色斜体：数据不足，不参与评价。<br>Daily mean = mean of the valid hourly means, valid with ≥ 20 valid "
            "hours (GB 3095); small print: IAQI and valid hours. Grey italics: not enough data, not rated.</p>")
    return _section("日均值与 AQI", "Daily means and AQI", _table(head, rows) + note)


def _daily_row(r: DailyReport, row: dict[str, Any]) -> list[str]:
    station = row["station"]
    if _present(row["aqi"]):
        aqi = (f'<span class="pill" style="background:{row["colour"]};color:{svg.text_colour(row["colour"])}">'
               f'{int(row["aqi"])}</span>')
        category = f'{row["category"]}<br><small>{escape(str(row["category_en"]))}</small>'
    else:
        aqi = '<span class="pill na">NA</span>'
        category = f"–<br><small>缺 missing {_pollutants(row['missing'])}</small>"
    cells = [f"<b>{escape(station)}</b>", aqi, category, _pollutants(row["primary"]) or "–"]
    for p in ("pm25", "pm10", "so2", "no2", "co"):
        cells.append(_mean_cell(r, station, p, row[f"iaqi_{p}"]))
    o3 = r.daily[(r.daily["station"] == station) & (r.daily["pollutant"] == "o3")]
    windows = row["o3_8h_windows"]
    o3_8h = f'{_number(row["o3_8h"], "o3")}<small>IAQI {_int(row["iaqi_o3"])} · {windows}/17 窗口 windows</small>' \
        if not o3.empty and _present(row["o3_8h"]) else "–"
    cells += [o3_8h, _number(row["o3_1h"], "o3") if not o3.empty else "–"]
    return cells


def _mean_cell(r: DailyReport, station: str, pollutant: str, iaqi: Any) -> str:
    found = r.daily[(r.daily["station"] == station) & (r.daily["pollutant"] == pollutant)]
    if found.empty:
        return '<span class="muted">未测 n/a</span>'
    d = found.iloc[0]
    css = "" if d["valid"] else ' class="invalid"'
    return (f'<span{css}>{_number(d["mean"], pollutant)}</span>'
            f'<small>IAQI {_int(iaqi)} · {int(d["valid_hours"])} h ({d["capture"]:.0%})</small>')


def _limits_table(r: DailyReport) -> str:
    """One row per station, one column per pollutant: hours over the 1 h limit, and the daily verdict."""
    if r.limits.empty:
        return _section("超标情况", "Hours over limits", _nothing("无数据 no data"), anchor="limits")
    head = ["站点<br><small>Station</small>", *(_limit_head(r, p) for p in PANELS)]
    rows = []
    for station in r.stations:
        mine = r.limits[r.limits["station"] == station]
        rows.append([f"<b>{escape(station)}</b>", *(_limit_cell(mine[mine["pollutant"] == p], p) for p in PANELS)])
    note = (f'<p class="note">{escape(GB3095_NAMES.get(r.gb3095_edition, r.gb3095_edition))} 二级限值；'
            "严格大于限值为超标；数据不足的日值不评价。Grade II limits; over means strictly above; a daily value "
            "without enough data is not judged. 1 h: 超标小时数与小时最大值 hours over and the largest hourly "
            "mean; 24 h / 8 h: 日均值或 O₃ 日最大 8 小时 the daily mean, or O₃'s daily max 8 h.</p>")
    return _section("超标情况", "Hours over limits", _table(head, rows) + note, anchor="limits")


def _limit_head(r: DailyReport, pollutant: str) -> str:
    symbol = NAMES[pollutant][0]
    daily = "8h" if pollutant == "o3" else "24h"
    parts = [f"{_span(a)} {lim:g}" for a in ("1h", daily)
             if (lim := standards.limit(pollutant, a, r.gb3095_edition)) is not None]
    return f'{symbol}<br><small>{" · ".join(parts)} {standards.unit(pollutant)}</small>'


def _limit_cell(rows: pd.DataFrame, pollutant: str) -> str:
    if rows.empty:
        return '<span class="muted">未测 n/a</span>'
    lines = []
    for row in rows.to_dict("records"):
        value = _number(row["value"], pollutant)
        if row["averaging"] == "1h":
            over = int(row["hours_over"])
            count = f'<span class="{"over" if over else "ok"}">{over} h</span>'
            lines.append(f'<div class="lim">1 h {count} <small>max {value}</small></div>')
        elif pd.isna(row["exceeded"]):
            lines.append(f'<div class="lim">{_span(row["averaging"])} <span class="muted">'
                         f'{value} 不评价 not judged</span></div>')
        else:
            verdict = '<span class="over">超标 over</span>' if row["exceeded"] else '<span class="ok">达标 ok</span>'
            lines.append(f'<div class="lim">{_span(row["averaging"])} {value} {verdict}</div>')
    return "".join(lines)


def _span(averaging: str) -> str:
    """ "24h" as "24 h"."""
    return averaging.removesuffix("h") + " h"


def _alerts(r: DailyReport) -> str:
    if r.alerts.empty:
        return _section("告警", "Alerts", _nothing("当日无告警 no alerts that day"), anchor="alerts")
    head = ["开始<br><small>Started</small>", "级别<br><small>Severity</small>",
            "规则 · 来源<br><small>Rule · source</small>", "状态<br><small>State</small>",
            "内容<br><small>Message</small>", "值 / 阈值<br><small>Value / threshold</small>",
            "变更<br><small>Changes</small>"]
    rows = []
    for a in r.alerts.to_dict("records"):
        state_zh, state_colour = STATE_NAMES.get(a["state"], (a["state"], "#6b7280"))
        message = escape(str(a["message_zh"])) + "<br>" if _present(a["message_zh"]) else ""
        rows.append([
            _time(a["started_at"], r), f'<span class="sev" style="background:'
            f'{SEVERITY_COLOURS.get(a["severity"], "#6b7280")}">{escape(str(a["severity"]))}</span>',
            f'{escape(str(a["rule"]))}<br><small>{escape(str(a["source"]))}</small>',
            f'<span class="state" style="color:{state_colour}">● {state_zh}</span><br><small>{escape(str(a["state"]))}'
            f"</small>",
            f'{message}<small>{escape(str(a["message"]))}</small>',
            f'{_plain(a["value"])} / {_plain(a["threshold"])}', str(a["changes"]),
        ])
    return _section("告警", "Alerts", _table(head, rows), anchor="alerts")


def _gates(r: DailyReport) -> str:
    if r.traffic.empty:
        traffic = _nothing("当日无门禁记录 no gate events")
    else:
        rows = [svg.Bar(f'{row["class_zh"]} {row["vehicle_class"]}', [row["entries"], row["exits"], row["denied"]])
                for row in r.traffic.to_dict("records")]
        chart = svg.bars(rows, [("进 in", "#2563eb"), ("出 out", "#0d9488"), ("拒绝 denied", "#9ca3af")],
                         label="gate traffic by vehicle class")
        head = ["类别<br><small>Class</small>", "进<br><small>Entries</small>", "出<br><small>Exits</small>",
                "拒绝<br><small>Denied</small>"]
        body = [[f'{escape(row["class_zh"])} <small>{escape(row["vehicle_class"])}</small>', str(row["entries"]),
                 str(row["exits"]), str(row["denied"])] for row in r.traffic.to_dict("records")]
        totals = (f"<b>{int(r.traffic[c].sum())}</b>" for c in ("entries", "exits", "denied"))
        body.append(["<b>合计 total</b>", *totals])
        traffic = f'<div class="split"><div>{chart}</div><div>{_table(head, body, numeric_from=1)}</div></div>'
    return _section("门禁通行", "Gate traffic", traffic) + _stays(r)


def _stays(r: DailyReport) -> str:
    title_en = f"Hazmat vehicles' stays (overstay: over {r.dwell_limit_h:g} h)"
    if r.stays.empty:
        return _section("危化品车辆停留", title_en, _nothing("当日无危化品车辆 no hazmat vehicles"))
    spans, rows = [], []
    for s in r.stays.to_dict("records"):
        status = ('<span class="over">超时 overstay</span>' if s["overstay"] else '<span class="ok">正常 ok</span>') + \
            (' <span class="inside">在园 inside</span>' if s["inside"] else "")
        stay = f'{s["stay_h"]:.1f} h' if _present(s["stay_h"]) else "–"
        spans.append(svg.Span(
            f'{s["plate"]} {CLASS_SHORT.get(s["vehicle_class"], "")}', _hours_from_start(s["entry"], r),
            None if s["inside"] else _hours_from_start(s["exit"], r), stay,
            "#c81e1e" if s["overstay"] else "#0d9488",
            f'{s["plate"]} {s["un_number"]} · {_time(s["entry"], r)} → {_time(s["exit"], r)} · {stay}'))
        rows.append([f'<b>{escape(str(s["plate"]))}</b>', f'{CLASS_SHORT.get(s["vehicle_class"], "")} '
                     f'<small>{escape(str(s["vehicle_class"]))}</small>', escape(_plain(s["un_number"])),
                     escape(_plain(s["hazard_class"])), escape(_plain(s["load_t"])),
                     f'{_time(s["entry"], r)} <small>{escape(_plain(s["gate_in"]))}</small>',
                     f'{_time(s["exit"], r)} <small>{escape(_plain(s["gate_out"]))}</small>', stay, status])
    chart = svg.timeline(spans, label="hazmat stays over the day")
    head = ["车牌<br><small>Plate</small>", "类别<br><small>Class</small>", "UN 编号<br><small>UN number</small>",
            "危险类别<br><small>Hazard class</small>", "载重 t<br><small>Load</small>", "入园<br><small>Entry</small>",
            "出园<br><small>Exit</small>", "停留<br><small>Stay</small>", "状态<br><small>Status</small>"]
    return _section("危化品车辆停留", title_en, chart + _table(head, rows))


CLASS_SHORT = {"hazmat": "危化品", "hazwaste": "危废"}


def _method(r: DailyReport) -> str:
    return (
        '<footer><p>方法 Method: 小时均值取有效读数（标记 F/M/D/C/B 除外）且 ≥ 45 个分钟；日均值 ≥ 20 个有效小时；'
        "O₃ 日最大 8 小时滑动平均 ≥ 14 个有效窗口；AQI 按 HJ 633 当日有效版本，"
        "缺少有效日均值的污染物使 AQI ≤ 100 时记为 NA。"
        "<br>Hourly means of valid readings (not flagged F/M/D/C/B) with ≥ 45 minutes; daily means with ≥ 20 valid "
        "hours; O₃ daily max 8 h with ≥ 14 valid windows; AQI by the HJ 633 edition in force that day, NA when a "
        "pollutant lacks a valid daily mean and the AQI is at most 100. "
        f"Generated by ParkWatch from the store; CSV tables beside this page. 时区 {escape(r.timezone)}.</p></footer>"
    )


# --- helpers --------------------------------------------------------------------------------------------


def _section(title: str, title_en: str, body: str, *, anchor: str | None = None, extra: str = "",
             css: str = "") -> str:
    ident = f' id="{escape(anchor)}"' if anchor else ""
    klass = f' class="{css}"' if css else ""
    return (f'<section{ident}{klass}><div class="head"><h2>{escape(title)} <span class="en">{escape(title_en)}</span>'
            f"</h2>{extra}</div>{body}</section>")


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], numeric_from: int | None = None) -> str:
    cells = "".join(f"<th>{h}</th>" for h in head)
    body = []
    for row in rows:
        tds = [f'<td class="num">{c}</td>' if numeric_from is not None and i >= numeric_from else f"<td>{c}</td>"
               for i, c in enumerate(row)]
        body.append(f"<tr>{''.join(tds)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{cells}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _nothing(text: str) -> str:
    return f'<p class="nothing">{escape(text)}</p>'


def _pollutant_head(pollutant: str) -> str:
    symbol, name = NAMES.get(pollutant, (pollutant, ""))
    return f'{symbol}<br><small>{name} {standards.unit(pollutant) if pollutant in NAMES else ""}</small>'


def _pollutants(names: Any, *, plain: bool = False) -> str:
    """"pm25,o3" as "PM2.5, O₃"."""
    if not _present(names) or not names:
        return ""
    shown = [NAMES.get(n, (n, ""))[0] for n in str(names).split(",")]
    return ", ".join(shown) if plain else escape(", ".join(shown))


def _values(column: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in column]


def _number(value: Any, pollutant: str) -> str:
    if not _present(value):
        return "–"
    return f"{float(value):.2f}" if pollutant == "co" else f"{float(value):.1f}"


def _int(value: Any) -> str:
    return str(int(value)) if _present(value) else "–"


def _plain(value: Any) -> str:
    if not _present(value) or value == "":
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _time(at: Any, r: DailyReport) -> str:
    """HH:MM on the report's day, MM-DD HH:MM on another."""
    if not _present(at):
        return "–"
    return f"{at:%H:%M}" if at.date() == r.day else f"{at:%m-%d %H:%M}"


def _hours_from_start(at: Any, r: DailyReport) -> float | None:
    if not _present(at):
        return None
    midnight = pd.Timestamp(r.day.isoformat()).tz_localize(at.tzinfo)
    return float((at - midnight) / pd.Timedelta(hours=1))


def _present(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return False
    return not (isinstance(value, float) and math.isnan(value))


CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f1f4f8;--accent:#0f4c81;--bad:#c81e1e;--good:#15803d}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,"Segoe UI",
"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei","WenQuanYi Micro Hei",sans-serif}
header{background:linear-gradient(120deg,#0b2540 0%,#0f4c81 60%,#1570a6 100%);color:#fff}
.wrap,main{max-width:1180px;margin:0 auto;padding:0 24px}
header .wrap{padding:26px 24px 24px}
.eyebrow{font-size:12px;letter-spacing:.08em;text-transform:uppercase;opacity:.8}
h1{font-size:34px;margin:6px 0 0;font-weight:700}
h1 .park{font-family:ui-monospace,"SFMono-Regular",Menlo,monospace;background:rgba(255,255,255,.14);
padding:0 10px;border-radius:8px}
.date{font-size:22px;margin-top:4px;font-weight:600}.date span{font-weight:400;opacity:.85;margin-left:8px}
.chips{margin-top:12px;display:flex;flex-wrap:wrap;gap:8px}
.chips span{background:rgba(255,255,255,.16);border:1px solid rgba(255,255,255,.25);border-radius:999px;
padding:2px 12px;font-size:12.5px}
section{background:#fff;border-radius:14px;box-shadow:0 1px 2px rgba(15,23,42,.06),0 4px 14px rgba(15,23,42,.05);
padding:18px 22px 20px;margin:18px 0}
.head{display:flex;align-items:center;justify-content:space-between;gap:12px;margin-bottom:10px}
h2{font-size:21px;margin:0;color:#0b2540}h2 .en{color:var(--muted);font-weight:400;font-size:15px;margin-left:6px}
h3{font-size:15px;margin:14px 0 6px;color:#334155}
h3 .en{color:var(--muted);font-weight:400;font-size:13px;margin-left:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:14px}
.card{display:block;border:1px solid var(--line);border-radius:12px;overflow:hidden;color:inherit;
text-decoration:none;background:#fff}
.card .band{padding:12px 16px}.card .label{font-size:12.5px;opacity:.85}
.card .big{font-size:40px;font-weight:800;line-height:1.1;font-variant-numeric:tabular-nums}
.card .big small{font-size:14px;font-weight:500;color:var(--muted)}
.card .big.pair{display:flex;flex-wrap:wrap;column-gap:18px;font-size:34px}
.card .cat{font-size:16px;font-weight:700}.card .cat span{font-weight:400;font-size:13px;opacity:.85}
.card .facts{padding:10px 16px;font-size:13px;color:#374151;border-top:1px solid var(--line)}
.card.plain{padding-top:12px}.card.plain .label,.card.plain .big{padding:0 16px}.card.plain .label{color:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:4px 0 0}
.legend .what{font-size:12.5px;color:var(--muted);margin-right:4px}
.chip{font-size:12px;border-radius:6px;padding:3px 9px}
.pill{display:inline-block;padding:3px 12px;border-radius:999px;font-weight:700;font-variant-numeric:tabular-nums}
.pill.na{background:#e5e7eb;color:#4b5563}
.panels{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}
.panel{margin:0;border:1px solid var(--line);border-radius:10px;padding:8px 10px 4px;background:#fcfdfe}
.panel figcaption{font-size:14px;display:flex;flex-wrap:wrap;align-items:baseline;gap:6px}
.panel figcaption b{font-size:15px}.panel .unit{color:var(--muted);font-size:12px}
.panel .stat{margin-left:auto;font-size:12px;color:#374151}
.panel.empty .nodata{height:200px;display:flex;align-items:center;justify-content:center;color:var(--muted)}
.key{font-size:11.5px;color:var(--muted);display:flex;align-items:center;gap:6px;margin:-2px 0 4px}
.key i{display:inline-block;width:18px;height:0;border-top:2px solid #0369a1}
.key i.dash{border-top:2px dashed #0c4a6e;margin-left:8px}
svg{max-width:100%;height:auto;display:block}
svg.strip{margin:2px 0 6px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th{background:#f3f6fa;color:#334155;font-weight:600;text-align:left;padding:7px 10px;border-bottom:2px solid #dbe2ea;
white-space:nowrap;vertical-align:bottom}
th small{font-weight:400;color:var(--muted)}
td{padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top;font-variant-numeric:tabular-nums}
td small{display:block;color:var(--muted);font-size:11.5px}
td.num{text-align:right}
.lim{white-space:nowrap;line-height:1.7}.lim small{display:inline;margin-left:2px}
tbody tr:hover{background:#f8fafc}
.invalid{color:#9ca3af;font-style:italic}.muted{color:#9ca3af}
.over{display:inline-block;background:#fde8e8;color:var(--bad);font-weight:700;border-radius:6px;padding:0 8px}
.ok{color:var(--good)}.bad{color:var(--bad);font-weight:700}
.inside{display:inline-block;background:#fff4e0;color:#b45309;border-radius:6px;padding:0 6px;font-size:12px}
.sev{display:inline-block;color:#fff;font-size:12px;font-weight:600;border-radius:6px;padding:1px 8px;margin-right:4px}
.state{font-weight:600}
.split{display:grid;grid-template-columns:minmax(0,1.1fr) minmax(0,1fr);gap:22px;align-items:start}
.note{font-size:12px;color:var(--muted);margin:8px 0 0}
.nothing{color:var(--muted);font-style:italic;margin:4px 0}
footer{font-size:12px;color:var(--muted);padding:6px 4px 30px}
@media (max-width:900px){.panels{grid-template-columns:repeat(2,1fr)}.split{grid-template-columns:1fr}}
@media print{body{background:#fff}section{box-shadow:none;border:1px solid var(--line);break-inside:avoid}}
"""
