"""The only formatting code: tables to a self-contained HTML page (no CDN, works offline) and CSV files,
written by analysis.writer (atomically, and only ever replacing the report's own files)."""
from __future__ import annotations

from pathlib import Path

from .table import Table, esc, table_html
from .writer import write_folder

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
.mg2r .blocks{display:flex;flex-wrap:wrap;gap:10px}.mg2r figure.blk{margin:0}
.mg2r figcaption{font-size:12px;font-weight:600}.mg2r table.grid td{width:9px;height:9px;padding:0}
.mg2r table.grid th.q{font-weight:400;font-size:10px;padding:0 3px;max-width:80px;overflow:hidden}
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
