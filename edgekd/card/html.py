"""``card.html``: the card as one self-contained page, plots inline as base64 data URIs.

It renders the body of ``card.md`` (the same words and tables), converting the small Markdown
subset that :func:`~edgekd.card.markdown.render_markdown` writes: headings, pipe tables, bullet
lists, fenced code, paragraphs, ``**bold**`` and ```code```. No Markdown library is needed on
the device for this.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from edgekd.card.markdown import render_markdown

__all__ = ["render_html", "markdown_to_html"]

_STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem}
td{text-align:right}td:first-child{text-align:left}pre{background:#f4f4f4;padding:.6rem;overflow:auto}
img{max-width:100%}"""


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def markdown_to_html(markdown: str) -> str:
    """HTML for the Markdown subset of card.md (front matter removed)."""
    lines = markdown.splitlines()
    if lines and lines[0] == "---":  # front matter: for the Hub, not for readers
        end = lines.index("---", 1)
        lines = lines[end + 1:]
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            out.append("<pre>" + html.escape("\n".join(block)) + "</pre>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = re.split(r"(?<!\\)\|", lines[i].strip()[1:-1])
                rows.append([c.strip().replace("\\|", "|") for c in cells])
                i += 1
            i -= 1
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                                 for r in body) + "</table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            i -= 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def render_html(card: dict, plots: list[Path] | None = None) -> str:
    """The whole page: card.md's content, then every plot inlined."""
    figures = []
    for path in plots or []:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        figures.append(f'<figure><img alt="{html.escape(Path(path).stem)}" '
                       f'src="data:image/png;base64,{data}"></figure>')
    title = html.escape(f"{card['name']} {card['version']}: fairness card")
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body>\n{markdown_to_html(render_markdown(card))}\n"
            + ("<h2>Plots</h2>\n" + "\n".join(figures) if figures else "") + "\n</body></html>\n")
