"""The daily report (`parkwatch report`): tables computed with pandas from the store, as CSV and one
self-contained HTML page with inline SVG plots.

    daily.py   the computation: ReportDay, DailyReport, daily_report(), write_csv()
    svg.py     a small plotting kit: line panels with limits, the AQI strip, bars, a stay timeline
    page.py    the HTML page: render_html()
"""

from rules.report.daily import DailyReport, ReportDay, daily_report, write_csv
from rules.report.page import render_html

__all__ = ["DailyReport", "ReportDay", "daily_report", "render_html", "write_csv"]
