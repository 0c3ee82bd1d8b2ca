"""A self-contained HTML page: inline CSS, PNG figures embedded as base64 data URIs, and no scripts,
fonts or links outside the page, so it opens offline and requests nothing from the network.
"""

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body { font-family: sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 1.5em 3em; color: #222; }
h1 { border-bottom: 2px solid #444; padding-bottom: 0.3em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
nav ol { columns: 3; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.note { color: #555; font-style: italic; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


@dataclass
class Section:
    """One part of the report, with an `id` that the table of contents links to."""

    id: str
    title: str
    parts: list[str] = field(default_factory=list)  # HTML fragments, in order

    def add_figure(self, path: Path, description: str) -> None:
        self.parts.append(image_html(path, description))

    def add_table(self, headers: list[str], rows: list[list[object]]) -> None:
        self.parts.append(table_html(headers, rows))

    def add_note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')


def image_html(path: Path, description: str) -> str:
    """Return an <img> element whose source is the PNG file at `path`, embedded as a data URI."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(description)}">'


def _cell(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def table_html(headers: list[str], rows: list[list[object]]) -> str:
    """Return an HTML table; floats show 4 decimals and None shows as "n/a"."""
    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>\n" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>"


def preformatted_html(text: str, summary: str) -> str:
    """Return `text` in a collapsed <details> block, for long plain text such as a configuration."""
    return f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>"


def render_page(title: str, sections: list[Section]) -> str:
    """Return the whole HTML document: title, table of contents and every section."""
    contents = "".join(f'<li><a href="#{section.id}">{html.escape(section.title)}</a></li>' for section in sections)
    body = "\n".join(
        f'<section id="{section.id}">\n<h2>{html.escape(section.title)}</h2>\n' + "\n".join(section.parts)
        + "\n</section>"
        for section in sections
    )
    # The empty data-URI icon keeps the browser from requesting /favicon.ico.
    head = (f'<meta charset="utf-8">\n<link rel="icon" href="data:,">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n'
            f"<body>\n<h1>{html.escape(title)}</h1>\n<nav><ol>{contents}</ol></nav>\n{body}\n</body>\n</html>\n")
