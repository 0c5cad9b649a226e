"""OUT/report.html: report.md as one self-contained page, for the user's browser.

The figures are embedded (PNG as base64 data), each with its caption from
docs/figures.md; every table sorts by a click on its header (a few lines of
inline script, no network). Pure: the markdown, the figures' bytes and the
captions in, the page out.
"""

from __future__ import annotations

import base64
import html
import re

from markdown_it import MarkdownIt

# a paragraph of figure images, as markdown-it renders report.md's "![f](f)" lines
_IMAGES = re.compile(r"<p>((?:<img [^>]*/>\s*)+)</p>")
_IMG = re.compile(r'<img src="([^"]*)" alt="[^"]*" />')
_HEADING = re.compile(r"^### (\S+\.png)\n", re.M)

_STYLE = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem;display:block;overflow-x:auto}th,td{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f2f2f2;cursor:pointer}th[data-order=asc]::after{content:" ▲"}th[data-order=desc]::after{content:" ▼"}
figure{margin:1.5rem 0}figure img{max-width:100%}figcaption{font-size:.9rem;color:#333}"""

# click a header: sort the body's rows by that column (numbers as numbers, the rest as text), again: reverse
_SCRIPT = """function cellKey(td){var s=td.textContent.trim().replace("\\u2212","-");
var m=s.match(/^[+-]?(\\d+\\.?\\d*|\\.\\d+)(e[+-]?\\d+)?/i);return m?[0,parseFloat(m[0])]:[1,s.toLowerCase()];}
function sortBy(table,i,th){var asc=th.getAttribute("data-order")!=="asc";
Array.prototype.forEach.call(th.parentNode.cells,function(c){c.removeAttribute("data-order");});
th.setAttribute("data-order",asc?"asc":"desc");var body=table.tBodies[0];
var rows=Array.prototype.slice.call(body.rows);rows.sort(function(a,b){var x=cellKey(a.cells[i]),y=cellKey(b.cells[i]);
var d=x[0]-y[0]||(x[1]<y[1]?-1:x[1]>y[1]?1:0);return asc?d:-d;});rows.forEach(function(r){body.appendChild(r);});}
Array.prototype.forEach.call(document.querySelectorAll("table"),function(t){if(!t.tHead||!t.tBodies.length)return;
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){th.title="sort by this column";
th.addEventListener("click",function(){sortBy(t,i,th);});});});"""


def captions(figures_md: str) -> dict[str, str]:
    """Figure file name -> its caption in docs/figures.md, as plain text."""
    parts = _HEADING.split(figures_md)
    out = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        text = re.split(r"^#", body, maxsplit=1, flags=re.M)[0]
        out[name] = " ".join(text.replace("**", "").replace("`", "").split())
    return out


def report_html(markdown: str, figures: dict[str, bytes], captions_by_name: dict[str, str], title: str) -> str:
    """The page: ``markdown`` rendered (raw HTML in it escaped), each image the report names replaced by a
    figure holding the PNG's bytes from ``figures`` (path as in the report -> bytes) and its caption."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)

    def figure(path: str) -> str:
        name = path.rsplit("/", 1)[-1]
        data = base64.b64encode(figures[path]).decode("ascii")
        caption = captions_by_name.get(name, "")
        return (f'<figure id="{html.escape(_anchor(path))}"><img src="data:image/png;base64,{data}" '
                f'alt="{html.escape(path)}"><figcaption><b>{html.escape(path)}</b>. {html.escape(caption)}'
                "</figcaption></figure>")

    body = _IMAGES.sub(lambda m: "\n".join(figure(html.unescape(src)) for src in _IMG.findall(m.group(1))), body)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n{body}<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def _anchor(path: str) -> str:
    return "fig-" + re.sub(r"[^A-Za-z0-9_-]", "-", path)
