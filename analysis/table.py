"""Table: the rows of one view, as a notebook, a CSV file and the page show them.

The only code that formats a table: CSV (with formula neutralisation) and its HTML block.
"""
from __future__ import annotations

import csv
import html
import re
from dataclasses import dataclass

import numpy as np

from .matches import HIGH_BIAS


@dataclass
class Table:
    name: str                 # file stem: patterns -> patterns.csv
    title: str
    columns: list[str]
    rows: list[list]
    note: str = ""
    heat: tuple[str, ...] = ()          # columns shown as a heat map (0 white, 0.5 green, >=1 red)
    html_limit: int | None = None       # the HTML shows the first rows only, and counts the rest
    pivot: tuple | None = None          # HTML layout: (row key columns, column key, value column)
    zeros_as_dashes: bool = False       # exact 0.0 displays as "--" (as in the essay)
    blocks: tuple[str, ...] = ()        # HTML layout: one small heat map per value of these key columns
                                        #   (rows: the column after them; cells: the heat columns, no text)

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def to_csv(self, path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for r in self.rows:
                w.writerow([csv_safe(display(v, digits=7)) for v in r])   # float32's precision; zeros stay 0

    def _repr_html_(self) -> str:
        return table_html(self)

    def __len__(self) -> int:
        return len(self.rows)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_safe(v):
    """A cell a spreadsheet will not evaluate: text starting with = + - @ tab or CR gets a leading ',
    unless it is a plain number ("-1.5" stays a number). OWASP's rule against CSV injection."""
    if isinstance(v, str) and v.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(v):
        return "'" + v
    return v


def display(v, zeros_as_dashes: bool = False, digits: int = 4):
    """A cell as text: None blank, exact zeros "--" where asked, floats to `digits` significant digits."""
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        if zeros_as_dashes and v == 0.0:
            return "--"
        return f"{float(v):.{digits}g}"
    return v


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
            cls = ' class="hb"' if v == HIGH_BIAS else ' class="words"'
            tds += f"<td{cls}>{esc(v)}</td>"
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _blocks_html(table: Table) -> str:
    """A grid of small heat maps, one per block key (e.g. one per head): value in each cell's tooltip."""
    ki = [table.columns.index(k) for k in table.blocks]
    ri = len(table.blocks)                                  # the row label column follows the keys
    hi = [table.columns.index(c) for c in table.heat]
    rows = table.rows if table.html_limit is None else table.rows[: table.html_limit]
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[i] for i in ki), []).append(r)
    parts = []
    for key, rs in groups.items():
        name = " ".join(f"{k[0].upper()}{v}" for k, v in zip(table.blocks, key))
        body = "".join(
            f'<tr><th class="q">{esc(r[ri])}</th>' + "".join(
                "<td></td>" if r[i] is None else
                f'<td style="{heat_colour(r[i])}" title="{esc(table.columns[i])}: {r[i]:.3f}"></td>' for i in hi)
            + "</tr>" for r in rs)
        parts.append(f'<figure class="blk"><figcaption>{esc(name)}</figcaption><table class="grid">{body}'
                     "</table></figure>")
    more = ""
    if len(rows) < len(table.rows):
        more = (f'<p class="more">Showing {len(groups)} blocks; the rest are in {esc(table.name)}.csv.</p>')
    return f'<div class="blocks">{"".join(parts)}</div>{more}'


def table_html(table: Table) -> str:
    inner = _pivot_html(table) if table.pivot else _blocks_html(table) if table.blocks else _flat_html(table)
    return f'<div class="mg2"><h2>{esc(table.title)}</h2><p class="note">{esc(table.note)}</p>{inner}</div>'


# Every rule is scoped to .mg2r, so the report can sit inside a Jupyter notebook without restyling it.
