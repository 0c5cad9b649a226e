"""Open a run's report.html in headless Chromium and check what a reader gets (issue: an HTML report a
browser shows whole).

    python scripts/check_report_html.py OUT/report.html [--chromium /usr/bin/chromium] [--self-test]

Needs Playwright's Python package (`pip install playwright`; no browser download: it drives the
system's Chromium, Debian's `chromium` package) and is run by `.ci/browser_check.sh`, which installs
both. It loads the page from disk with the network off and fails, one line per problem, unless:

- the page logs no console error and raises no script error;
- every figure the report lists (report.json beside it, `figures`) is on the page once, decoded by
  the browser (complete, with a natural size) and laid out (a rendered width and height above 0);
- a click on a table's header sorts its rows by that column, and a second click reverses them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

# Chromium flags for a closed network (no background connections, no sandbox as root)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

# per figure: decoded (complete, natural size) and laid out (client size)
IMAGES_JS = """() => Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
    natural: i.naturalWidth * i.naturalHeight, shown: i.getBoundingClientRect().width * i.getBoundingClientRect().height}))"""
# the first table with a header and at least two distinct values in some column: that column's cells
COLUMN_JS = """([t, c]) => Array.from(document.querySelectorAll("table")[t].tBodies[0].rows).map(r => r.cells[c] ? r.cells[c].textContent.trim() : "")"""
TABLES_JS = """() => Array.from(document.querySelectorAll("table")).map(t => t.tHead && t.tBodies.length ?
    Array.from(t.tHead.rows[0].cells).map((_, c) => new Set(Array.from(t.tBodies[0].rows).map(r => r.cells[c] ? r.cells[c].textContent.trim() : "")).size) : [])"""


def check(page_path: Path, chromium: str) -> list[str]:
    problems: list[str] = []
    report = page_path.with_name("report.json")
    listed = json.loads(report.read_text())["figures"] if report.is_file() else None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
        page.route("http*://**", lambda route: (problems.append(f"network request: {route.request.url}"), route.abort()))
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        images = page.evaluate(IMAGES_JS)
        for im in images:
            if not im["complete"] or not im["natural"]:
                problems.append(f"figure not decoded: {im['alt']}")
            elif not im["shown"]:
                problems.append(f"figure not displayed: {im['alt']}")
        if listed is not None:
            shown = sorted(im["alt"] for im in images)
            if shown != sorted(listed):
                problems.append(f"figures on the page {shown} are not report.json's {sorted(listed)}")
        problems += _sorting(page)
        browser.close()
    return problems


def _sorting(page) -> list[str]:
    """Click the header of the first column with distinct values: sorted, then reversed."""
    for t, distinct in enumerate(page.evaluate(TABLES_JS)):
        c = next((i for i, n in enumerate(distinct) if n > 1), None)
        if c is None:
            continue
        before = page.evaluate(COLUMN_JS, [t, c])
        header = page.locator("table").nth(t).locator("thead tr").first.locator("th").nth(c)
        header.click()
        up, up_mark = page.evaluate(COLUMN_JS, [t, c]), header.get_attribute("data-order")
        header.click()
        down, down_mark = page.evaluate(COLUMN_JS, [t, c]), header.get_attribute("data-order")
        # the same rows, reordered, and the second click puts the first row's value last
        if (sorted(up) != sorted(before) or sorted(down) != sorted(before) or (up_mark, down_mark) != ("asc", "desc")
                or up == down or up[0] != down[-1]):
            return [f"table {t + 1}: a click on header {c + 1} did not sort the rows ({up[:4]} then {down[:4]})"]
        return []
    return ["no table with a column to sort"]


def self_test(page_path: Path, chromium: str) -> list[str]:
    """The check can fail: on a copy of the page with a script error, one figure's bytes cut and the sorting
    script's listener broken, it must name each of the three."""
    with tempfile.TemporaryDirectory() as d:
        broken = Path(d) / "report.html"
        s = page_path.read_text()
        s = s.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
        s = s.replace('th.addEventListener("click"', 'th.addEventListener("no-click"')
        s = s.replace("<script>", "<script>notAFunction();", 1) + "<script>notAFunction();</script>"
        broken.write_text(s)
        got = check(broken, chromium)
    want = ("script error", "figure not decoded", "did not sort")
    return [f"self-test: the check missed a planted problem ({w})" for w in want if not any(w in g for g in got)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("page", type=Path)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--self-test", action="store_true", help="first check that a copy built to fail fails")
    a = ap.parse_args(argv)
    if not a.page.is_file():
        print(f"error: no such page: {a.page}", file=sys.stderr)
        return 2
    problems = (self_test(a.page, a.chromium) if a.self_test else []) + check(a.page, a.chromium)
    for line in problems:
        print(f"error: {a.page}: {line}", file=sys.stderr)
    if not problems:
        print(f"{a.page}: loaded in Chromium with no console or script error, every figure displayed, tables sort")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
