"""The only formatting code: tables to a self-contained HTML page (no CDN, works offline) and CSV files,
written by analysis.writer (atomically, and only ever replacing the report's own files)."""
from __future__ import annotations

import html
from pathlib import Path

from .tables import Table, display
from .writer import write_folder

GREEN = (87, 187, 138)
RED = (230, 124, 115)
WHITE = (255, 255, 255)


def heat_colour(v) -> str:
    """0 white, 0.5 green, 1.0 and above red (linear in between); negatives white, as in the essay."""
    if v is None:
        return ""
    x = max(0.0, float(v))
    if x <= 0.5:
        a, b, f = WHITE, GREEN, x / 0.5
    else:
        a, b, f = GREEN, RED, min(1.0, (x - 0.5) / 0.5)
    r, g, bl = (round(a[i] + (b[i] - a[i]) * f) for i in range(3))
    return f"background:rgb({r},{g},{bl})"


def esc(v) -> str:
    return html.escape(str(v), quote=True)


def _cell(table: Table, col: str, v) -> str:
    style = heat_colour(v) if col in table.heat and v is not None else ""
    text = display(v, table.zeros_as_dashes)
    cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    return f'<td{cls} style="{style}">{esc(text)}</td>' if style else f"<td{cls}>{esc(text)}</td>"


def _flat_html(table: Table) -> str:
    rows = table.rows if table.html_limit is None else table.rows[: table.html_limit]
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "\n".join("<tr>" + "".join(_cell(table, c, v) for c, v in zip(table.columns, r)) + "</tr>" for r in rows)
    more = ""
    if len(rows) < len(table.rows):
        more = (f'<p class="more">Showing the first {len(rows)} of {len(table.rows)} rows; '
                f'{len(table.rows) - len(rows)} more are in {esc(table.name)}.csv.</p>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>{more}"


def _pivot_html(table: Table) -> str:
    """Rows keyed by the pivot's key columns, one column per value of its column key (the essay's sheet layout)."""
    keys, col_key, value = table.pivot
    ki = [table.columns.index(k) for k in keys]
    ci, vi, ti = table.columns.index(col_key), table.columns.index(value), table.columns.index("token")
    grid, cols = {}, {}
    for r in table.rows:
        grid.setdefault(tuple(r[i] for i in ki), {})[r[ci]] = r[vi]
        cols[r[ci]] = r[ti]
    head = "".join(f"<th>{esc(k)}</th>" for k in keys) + "".join(f"<th>{esc(t)}</th>" for t in cols.values())
    body = []
    for key, cells in grid.items():
        tds = "".join(f'<td class="num">{esc(k)}</td>' for k in key)
        for c in cols:
            v = cells.get(c, "")
            cls = ' class="hb"' if v == "(high bias)" else ' class="words"'
            tds += f"<td{cls}>{esc(v)}</td>"
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def table_html(table: Table) -> str:
    inner = _pivot_html(table) if table.pivot else _flat_html(table)
    return f'<div class="mg2"><h2>{esc(table.title)}</h2><p class="note">{esc(table.note)}</p>{inner}</div>'


# Every rule is scoped to .mg2r, so the report can sit inside a Jupyter notebook without restyling it.
CSS = """
.mg2r{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222}
.mg2r header{padding:14px 20px;background:#1f3b57;color:#fff}.mg2r header h1{margin:0;font-size:20px;color:#fff}
.mg2r header p{margin:4px 0 0;font-size:13px;opacity:.9}
.mg2r .tabs{display:flex;flex-wrap:wrap;padding:0 12px;background:#e8edf2;border-bottom:1px solid #c9d3dd}
.mg2r .tabs>input{display:none}
.mg2r .tabs>label{padding:9px 14px;cursor:pointer;font-size:14px;border-bottom:3px solid transparent}
.mg2r .tabs>input:checked+label{border-bottom-color:#1f3b57;font-weight:600;background:#fff}
.mg2r .panel{display:none;width:100%;padding:12px 8px;background:#fff;order:99;overflow-x:auto}
.mg2r .tabs>input:checked+label+.panel{display:block}
.mg2r h2{font-size:17px;margin:4px 0}.mg2r .note{font-size:13px;color:#555;max-width:1100px}
.mg2r table{border-collapse:collapse;font-size:12px}
.mg2r th,.mg2r td{border:1px solid #d8dde3;padding:3px 6px;vertical-align:top;text-align:left}
.mg2r th{background:#f0f3f6;position:sticky;top:0;white-space:pre}
.mg2r td.num{text-align:right;font-variant-numeric:tabular-nums}
.mg2r td{white-space:pre-wrap;max-width:420px}.mg2r td.hb{color:#999;font-style:italic}
.mg2r .more{font-size:12px;color:#555}
"""


# index.html#stream opens the stream tab (the tabs themselves are pure CSS and work without script)
PICK_TAB = ("<script>var t=document.getElementById(decodeURIComponent(location.hash.slice(1)));"
            "if(t&&t.type==='radio')t.checked=true;</script>")


def report_html(title: str, subtitle: str, tables: list[Table], uid: str = "") -> str:
    """The report as one scoped block: header, then a tab per table. uid prefixes the tab ids, so several
    reports can share a page (a notebook); the standalone page uses none, so index.html#stream works."""
    parts, group = [], f"{uid}tab"
    for i, t in enumerate(tables):
        tid = esc(uid + t.name)
        checked = " checked" if i == 0 else ""
        parts.append(f'<input type="radio" name="{group}" id="{tid}"{checked}><label for="{tid}">{esc(t.title)}</label>'
                     f'<div class="panel">{table_html(t)}</div>')
    return (f'<div class="mg2r"><style>{CSS}</style><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>'
            f'<div class="tabs">{"".join(parts)}</div></div>')


def page_html(title: str, subtitle: str, tables: list[Table]) -> str:
    """index.html: a self-contained page (no CDN, works offline)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            "<style>body{margin:0;background:#fafafa}</style></head>"
            f"<body>{report_html(title, subtitle, tables)}{PICK_TAB}</body></html>\n")


def write_report(out: str | Path, title: str, subtitle: str, tables: list[Table], force: bool = False) -> Path:
    """index.html and one CSV per table, written into out by analysis.writer's rules (its own files only)."""
    files = {f"{t.name}.csv": t.to_csv for t in tables}
    files["index.html"] = lambda path: path.write_text(page_html(title, subtitle, tables), encoding="utf-8")
    return write_folder(out, files, force=force)
