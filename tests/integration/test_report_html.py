"""The report page in a real browser: headless Chromium (Debian's `chromium`) lays out and paints its plots.

The page is opened from a file:// URL only; the flags keep Chromium off the network (no component
updates, sync or background requests). A copy of the page with a probe script appended is read back with
--dump-dom: the probe writes the rendered size of every SVG and the bounding boxes of its paths.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from ingest.stores.readers import SqliteReader
from ingest.stores.sqlite import SqliteStore
from rules.report import daily_report, render_html
from tests.conftest import require_binary
from tests.unit.test_report import DAY, PARK, SHANGHAI, alerts, gate_events, readings

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 1280, 2000
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
PROBE = """<script>(function () {
  var out = [];
  document.querySelectorAll("svg").forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    out.push({label: svg.getAttribute("aria-label"), kind: svg.getAttribute("class"), width: box.width,
              height: box.height,
              paths: Array.from(svg.querySelectorAll("path")).map(function (p) {
                var b = p.getBBox(); return {kind: p.getAttribute("class"), width: b.width, height: b.height}; }),
              rects: Array.from(svg.querySelectorAll("rect")).map(function (r) {
                var b = r.getBBox(); return {fill: r.getAttribute("fill"), width: b.width, height: b.height}; })});
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();</script>"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report page of the unit tests' known day, written to a file."""
    folder = tmp_path_factory.mktemp("report_html")
    store = SqliteStore(folder / "store.db")
    store.write(readings() + gate_events() + alerts())
    store.close()
    path = folder / "report.html"
    path.write_text(render_html(daily_report(SqliteReader(folder / "store.db"), PARK, DAY, SHANGHAI)),
                    encoding="utf-8")
    return path


def chromium(url: str, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once on `url` with its own profile directory; fails the test if it fails."""
    require_binary("chromium")
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    command = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def probe(page: Path, work: Path) -> list[dict[str, Any]]:
    """What the browser rendered: one entry per <svg>, with the boxes of its paths and rects."""
    probed = work / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    dom = chromium(probed.as_uri(), work, "--dump-dom", f"--window-size={WIDTH},{HEIGHT}").stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    charts: list[dict[str, Any]] = json.loads(html.unescape(found.group(1)))
    return charts


class TestRenderedPlots:
    def test_every_plot_is_in_the_rendered_dom_with_visible_paths(self, page: Path, tmp_path: Path) -> None:
        """Chromium lays out every SVG: line panels with non-empty series paths, a 24-cell AQI strip."""
        charts = probe(page, tmp_path)
        panels = [c for c in charts if "hourly means" in (c["label"] or "")]
        strips = [c for c in charts if c["kind"] == "strip"]
        assert len(panels) == 6 + 4  # S1 measures six pollutants, S2 four (SO2 and CO "not measured")
        assert len(strips) == 2
        for panel in panels:
            assert panel["width"] > 320 and panel["height"] > 170, panel["label"]
            series = [p for p in panel["paths"] if p["kind"] == "series"]
            assert series and all(p["width"] > 100 for p in series), panel["label"]
            assert any(p["width"] > 0 and p["height"] > 0 for p in panel["paths"]), panel["label"]
            assert any(p["kind"] == "limit" and p["width"] > 300 for p in panel["paths"]), panel["label"]
        rising = next(p for p in panels if p["label"].startswith("S1 PM2.5"))
        assert any(p["kind"] == "series" and p["height"] > 20 for p in rising["paths"])
        for strip in strips:
            assert strip["width"] > 1000
            assert len(strip["rects"]) == 24 and all(r["width"] > 30 and r["height"] > 20 for r in strip["rects"])
        s1_colours = {r["fill"] for r in strips[0]["rects"]}
        assert {"#FFFF00", "#FF7E00"} <= s1_colours

    def test_the_screenshot_shows_the_hj633_colours(self, page: Path, tmp_path: Path) -> None:
        """The painted page (1280 x 2000) shows the AQI strip's category colours and is not blank."""
        shot = tmp_path / "report.png"
        chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}")
        width, height, pixels = png_rgb(shot)
        assert (width, height) == (WIDTH, HEIGHT)
        counts = {colour: pixels.count(colour) for colour in ((0, 228, 0), (255, 255, 0), (255, 126, 0))}
        assert all(n > 2000 for n in counts.values()), counts  # green (S2), yellow and orange (S1) cells
        assert len(set(pixels[:: 97])) > 50  # text, lines and colours: not a blank page


def png_rgb(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and the RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            header = data[pos + 8:pos + 8 + length]
        elif kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    step = 4 if colour_type == 6 else 3
    raw, stride = zlib.decompress(idat), width * step
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for y in range(height):
        offset = y * (stride + 1)
        line = _unfilter(raw[offset], bytearray(raw[offset + 1:offset + 1 + stride]), previous, step)
        pixels.extend(zip(line[0::step], line[1::step], line[2::step], strict=True))
        previous = line
    return width, height, pixels


def _unfilter(kind: int, line: bytearray, up: bytearray, step: int) -> bytearray:
    """Undo one scanline's PNG filter (0 none, 1 sub, 2 up, 3 average, 4 Paeth)."""
    if kind == 0:
        return line
    if kind == 2:
        return bytearray((a + b) & 255 for a, b in zip(line, up, strict=True))
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        corner = up[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 255
        elif kind == 3:
            line[i] = (line[i] + (left + up[i]) // 2) & 255
        else:
            guess = left + up[i] - corner
            da, db, dc = abs(guess - left), abs(guess - up[i]), abs(guess - corner)
            line[i] = (line[i] + (left if da <= db and da <= dc else up[i] if db <= dc else corner)) & 255
    return line
