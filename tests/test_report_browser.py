"""The HTML report of `git exp report`, loaded in a real headless Chromium (Debian's package).

The report is made from a sweep of the example training (examples/mlp) really run through
`git exp run --sweep`. Chromium loads the file with networking of its own turned off and
prints the DOM after the page's script ran: the script writes how many curves the browser
actually laid out (SVG elements with a non-empty bounding box) and how many table rows there
are. Then a screenshot, which must be a PNG that is not blank.

Where no Chromium is there and none can be installed (scripts/chromium-up.sh needs root and
apt-get), the test skips with the reason, except in CI (CI=true), where it fails.
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import ROOT
from test_analysis import hermetic, make_mlp_sweep


def chromium() -> str:
    proc = subprocess.run([str(ROOT / "scripts" / "chromium-up.sh")], capture_output=True, text=True, timeout=900)
    path = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode == 0 and path and os.access(path, os.X_OK):
        return path
    reason = f"no headless Chromium here: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'not found'}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
            "--disable-extensions", f"--user-data-dir={profile}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


def png_pixels(data: bytes) -> List[bytes]:
    """Rows of raw pixel bytes of an 8-bit RGB/RGBA PNG (filters undone), with no library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert header is not None
    width, height, depth, color = header[:4]
    assert depth == 8 and color in (2, 6), header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: List[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return rows


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    base = tmp_path_factory.mktemp("report-browser")
    (base / "home").mkdir()
    sweep = make_mlp_sweep(base / "repo", hermetic(base / "home"))
    out = base / "report.html"
    proc = subprocess.run([sys.executable, "-m", "gitexp", "report", "--group", sweep["group"], "-o", str(out),
                           "--smooth", "0.3"], cwd=sweep["path"], env=hermetic(base / "home"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {"path": out, "sweep": sweep, "base": base}


def test_report_renders_in_a_real_browser(report_file: Dict[str, Any], tmp_path: Path) -> None:
    binary = chromium()
    page = report_file["path"]
    html = page.read_text()
    in_file = html.count('class="curve"')
    assert in_file >= 12
    dom = browser(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    check = re.search(r'id="render-check"[^>]*data-curves="(\d+)"[^>]*data-rows="(\d+)"', dom.stdout)
    assert check, "the page's script did not run: " + dom.stdout[:500]
    curves, rows = int(check.group(1)), int(check.group(2))
    assert rows == 4  # the table: one row per run of the sweep
    assert curves == in_file  # every curve in the file was laid out with a non-empty box
    assert "drawn: " not in dom.stdout and "<svg" in dom.stdout  # the count is for tests, not shown
    for exp in report_file["sweep"]["exps"]:
        assert f'id="run-{exp["id"]}"' in dom.stdout
    shot = tmp_path / "page.png"
    proc = browser(binary, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,900",
                   "--hide-scrollbars", page.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    rows_px = png_pixels(shot.read_bytes())
    assert len(rows_px) == 900 and len(rows_px[0]) in (1280 * 3, 1280 * 4)
    colors = set()
    for row in rows_px[::7]:
        step = 3 if len(row) == 1280 * 3 else 4
        colors.update(row[i:i + 3] for i in range(0, len(row), step * 5))
    assert len(colors) > 20, f"the screenshot is (nearly) blank: {len(colors)} colours"
    white = sum(row.count(b"\xff\xff\xff") for row in rows_px[::10])
    assert white < sum(len(row) for row in rows_px[::10]) // 3  # not all white
