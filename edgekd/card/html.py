"""``card.html``: the card as one self-contained page, plots inline as base64 data URIs.

It renders the body of ``card.md`` (the same words and tables), converting the small Markdown
subset that :func:`~edgekd.card.markdown.render_markdown` writes: headings, pipe tables, bullet
lists (one nesting level), fenced code, paragraphs, images on their own line, ``**bold**`` and
```code```, the renderer's own ``<details>`` / ``<summary>`` lines (long tables folded), and
backslash escapes (every card string arrives escaped by :mod:`edgekd.card.escape`, so none can
become a tag, a link or an image). No Markdown library is needed on the device for this. Images
whose file name is one of the given plots become ``data:image/png;base64,...`` URIs, so the page
needs no other file.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from edgekd.card.markdown import render_markdown
from edgekd.errors import EdgeKDError
from edgekd.paths import inside, is_inside

__all__ = ["render_html", "markdown_to_html", "bundle_plots"]

_STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem}
td{text-align:right}td:first-child{text-align:left}pre{background:#f4f4f4;padding:.6rem;overflow:auto}
img{max-width:100%}summary{cursor:pointer;margin:.3rem 0}figcaption{font-size:.85em;color:#555}"""


_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")  # a CommonMark backslash escape: \ + ASCII punctuation
_HELD = re.compile("\ue000(\\d+)\ue001")  # private-use marks: never in escaped card text


def _inline(text: str) -> str:
    """HTML of one line of card.md: ``**bold**`` and ```code``` of the renderer's own text;
    every backslash-escaped character (all markup a card string carries) is set aside first and
    put back as that literal character, HTML-escaped, so it can never open a tag or a span."""
    held: list[str] = []

    def hold(match: re.Match) -> str:
        held.append(match.group(1))
        return f"\ue000{len(held) - 1}\ue001"

    text = html.escape(_ESCAPE.sub(hold, text), quote=True)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return _HELD.sub(lambda m: html.escape(held[int(m.group(1))], quote=True), text)


_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")
_SUMMARY = re.compile(r"^<summary>(.*)</summary>$")


def markdown_to_html(markdown: str, images: dict[str, str] | None = None) -> str:
    """HTML for the Markdown subset of card.md (front matter removed).

    ``images`` maps an image's file name to the ``src`` to use (e.g. a data URI); other images
    keep their path.
    """
    images = images or {}
    lines = markdown.splitlines()
    if lines and lines[0] == "---":  # front matter: for the Hub, not for readers
        end = lines.index("---", 1)
        lines = lines[end + 1 :]
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
        elif line in ("<details>", "</details>"):  # the renderer's own folding (card strings are escaped)
            out.append(line)
        elif _SUMMARY.match(line):
            out.append(f"<summary>{_inline(_SUMMARY.match(line).group(1))}</summary>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = re.split(r"(?<!\\)\|", lines[i].strip()[1:-1])
                rows.append([c.strip() for c in cells])  # an escaped \| stays for _inline
                i += 1
            i -= 1
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append(
                "<table><tr>"
                + "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</table>"
            )
        elif _IMAGE.match(line):
            alt, src = _IMAGE.match(line).groups()
            src = images.get(src.rsplit("/", 1)[-1], src)
            out.append(
                f'<figure><img alt="{html.escape(alt)}" src="{html.escape(src)}">'
                f"<figcaption>{html.escape(alt)}</figcaption></figure>"
            )
        elif line.startswith("- "):
            items: list[str] = []
            while i < len(lines) and (lines[i].startswith("- ") or lines[i].startswith("  - ")):
                if lines[i].startswith("  - "):  # nested under the previous item
                    nested = f"<ul><li>{_inline(lines[i][4:])}</li></ul></li>"
                    items[-1] = items[-1].removesuffix("</li>") + nested
                else:
                    items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            i -= 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def bundle_plots(bundle: Path, card: dict) -> list[Path]:
    """The PNG files a bundle's card lists under ``plots``, each checked to be the bundle's own
    (inside ``bundle/plots/``, symlinks resolved); anything else is one line, never read."""
    bundle = Path(bundle)
    where = bundle / "card.json"
    plots = []
    for rel in card.get("plots", []):
        path = inside(rel, bundle, listed_in=where) if isinstance(rel, str) else None
        if path is None or path.suffix != ".png" or not is_inside(path, bundle / "plots"):
            raise EdgeKDError(
                f"{where}: plot {rel!r} is not a PNG inside {bundle / 'plots'}; a card "
                f"embeds only its bundle's own plots"
            )
        if path.is_file():
            plots.append(path)
    return plots


def render_html(card: dict, plots: list[Path] | None = None) -> str:
    """The whole page: card.md's content with every plot inlined as a base64 data URI.

    ``plots`` are the PNG files (usually ``bundle/plots/*.png``); those the card does not
    reference in its Plots section are appended at the end.
    """
    sources = {
        Path(p).name: "data:image/png;base64," + base64.b64encode(Path(p).read_bytes()).decode("ascii")
        for p in plots or []
    }
    referenced = {p.rsplit("/", 1)[-1] for p in card.get("plots", [])}
    extra = [
        f'<figure><img alt="{html.escape(Path(name).stem)}" src="{src}"></figure>'
        for name, src in sources.items()
        if name not in referenced
    ]
    title = html.escape(f"{card['name']} {card['version']}: fairness card")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>\n"
        f"{markdown_to_html(render_markdown(card, fold_rest=True), sources)}\n"
        + ("<h2>More plots</h2>\n" + "\n".join(extra) if extra else "")
        + "\n</body></html>\n"
    )
