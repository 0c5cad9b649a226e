"""OUT/report.html, read as a browser's parser would: balanced tags, every image one of the report's figures
(its bytes embedded), every link resolving, every table rectangular, nothing fetched from the network.

The browser test is a CI step, since `make test` cannot require a Chromium of a user who has none and a test
may not skip: .ci/browser_check.sh opens the micro plan's page in Debian's headless Chromium
(scripts/check_report_html.py: no console or script error, every figure decoded and displayed, a header's
click sorts its table; and first, that it fails on a copy of the page built to fail, `--self-test`).
"""

import base64
from html.parser import HTMLParser
from pathlib import Path

from rankedit.core.resources import shipped_dir
from rankedit.report.html import captions, report_html

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.ids, self.links, self.images, self.tables, self.captions = [], [], set(), [], [], [], []
        self._in_caption = None
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {self.stack}")

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "img":
            self.images.append((a.get("src", ""), a.get("alt", "")))
        if tag in ("script", "link", "iframe") and (a.get("src") or a.get("href")):
            self.errors.append(f"<{tag}> loads {a.get('src') or a.get('href')}")
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append(0)
        if tag in ("td", "th"):
            self.tables[-1][-1] += 1
        if tag == "figcaption":
            self._in_caption = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag == "figcaption":
            self.captions.append("".join(self._in_caption))
            self._in_caption = None

    def handle_data(self, data):
        if self._in_caption is not None:
            self._in_caption.append(data)


def check_page(text: str, out: Path, figures: list[str]) -> Page:
    """Every structural promise of report.html over the report's own files; returns the parsed page."""
    page = Page(text)
    assert page.errors == []
    assert sorted(alt for _, alt in page.images) == sorted(figures)
    for src, alt in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (out / alt).read_bytes(), alt
    for href in page.links:
        if href.startswith("#"):
            assert href[1:] in page.ids, href
        elif "://" not in href:
            assert (out / href).exists(), href
    for rows in page.tables:
        assert rows and len(set(rows)) == 1, rows  # the header's cell count in every row
    assert all(len(c.split()) > 10 for c in page.captions) and len(page.captions) == len(figures)
    return page


def test_a_report_becomes_one_page_with_its_figures_captions_and_tables(tmp_path):
    (tmp_path / "analysis" / "tuned").mkdir(parents=True)
    figs = {"scores.png": b"\x89PNG one", "analysis/tuned/rank1_energy_hist.png": b"\x89PNG two"}
    for name, data in figs.items():
        (tmp_path / name).write_bytes(data)
    md = ("# A plan\n\nSee [the scores](#fig-scores-png), p < 0.05 <script>alert(1)</script>.\n\n"
          "| edit | R |\n|---|---|\n| rank1 | 0.5 |\n| mask | −0.1 |\n\n## Figures\n\n"
          + "\n".join(f"![{f}]({f})" for f in figs) + "\n")
    caps = captions((shipped_dir("docs") / "figures.md").read_text())
    text = report_html(md, {f: (tmp_path / f).read_bytes() for f in figs}, caps, "A plan")
    page = check_page(text, tmp_path, list(figs))
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # raw HTML escaped
    assert page.tables == [[2, 2, 2]]
    assert page.captions[1].startswith("analysis/tuned/rank1_energy_hist.png. Rank-1 energy over matrices")


def test_every_figure_has_a_caption_for_the_page():
    from rankedit.core.figure_list import FIGURES

    caps = captions((shipped_dir("docs") / "figures.md").read_text())
    assert set(caps) == {f.name for f in FIGURES} and all(len(c.split()) > 20 for c in caps.values())
