"""Table: the rows of one view, as a notebook, a CSV file and the page show them.

The only code that formats a table: CSV (with formula neutralisation) and its HTML block.
"""
from __future__ import annotations

import csv
import html
import re
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ..search.matches import HIGH_BIAS


@dataclass(repr=False)
class Table:
    name: str                 # file stem: patterns -> patterns.csv
    title: str
    columns: list[str]
    rows: list[list]
    note: str = ""                      # one or two sentences: what the table shows and how to read it
    heat: tuple[str, ...] = ()          # columns shown as a heat map (0 white, 0.5 green, >=1 red)
    html_limit: int | None = None       # the HTML shows the first rows only (a pivot: its first column keys)
    pivot: tuple | None = None          # HTML layout: (row key columns, column key, value column)
    zeros_as_dashes: bool = False       # exact 0.0 displays as "--" (as in the essay)
    blocks: tuple[str, ...] = ()        # HTML layout: one small heat map per value of these key columns
                                        #   (rows: the column after them; cells: the heat columns, no text)
    group_by: tuple[str, ...] = ()      # HTML: a separator line where these columns change (e.g. each head)
    select: str | None = None           # HTML: a chooser that shows the rows of one value of this column
    tips: dict = field(default_factory=dict)   # column -> row -> tooltip text (the HTML's title attribute)
    before: tuple = ()                  # tables shown above this one in its tab (each its own CSV)
    html_columns: tuple | None = None   # the page shows only these columns (the CSV has all)
    html_when: Callable | None = None   # the page shows only the rows for which this is true
    arrays: dict = field(default_factory=dict)   # file name -> array, written beside the CSV as .npy

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def where(self, **equal) -> "Table":
        """The rows whose columns equal the given values, e.g. t.where(layer=0, head=11)."""
        idx = {c: self.columns.index(c) for c in equal if c in self.columns}
        missing = set(equal) - set(idx)
        if missing:
            raise KeyError(f"{self.name} has no column {', '.join(sorted(missing))}; columns: {self.columns}")
        rows = [r for r in self.rows if all(r[i] == equal[c] for c, i in idx.items())]
        return replace(self, rows=rows, html_limit=None, before=())

    def to_pandas(self):
        """A pandas DataFrame of the rows (pandas is optional: pip install pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Table.to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows, columns=self.columns)

    def to_csv(self, path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            w.writerows([_csv_cell(v) for v in r] for r in self.rows)

    def _repr_html_(self) -> str:
        return table_html(self)

    def __repr__(self) -> str:
        return f"<Table {self.name!r}: {len(self.rows)} rows x {len(self.columns)} columns ({', '.join(self.columns[:6])}{', ...' if len(self.columns) > 6 else ''})>"

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


_FORMULA_CHARS = frozenset(_FORMULA_START)


def _csv_cell(v):
    """display(v, digits=7) then csv_safe, in one pass (a report writes about a million cells): floats at
    float32's precision never need neutralising; text is checked once."""
    t = type(v)
    if t is float:
        return f"{v:.7g}"
    if t is str:
        return "'" + v if v and v[0] in _FORMULA_CHARS and not _PLAIN_NUMBER.fullmatch(v) else v
    if v is None:
        return ""
    if isinstance(v, np.floating):
        return f"{float(v):.7g}"
    return csv_safe(v)


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


STICKY_KEYS = ("layer", "head", "neuron", "pos", "source", "query")   # label columns that stay in view


def _cell(table: Table, col: str, v, tip: str | None = None, sticky: str = "") -> str:
    style = heat_colour(v) if col in table.heat and v is not None else ""
    text = display(v, table.zeros_as_dashes)
    cls = ["num"] if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else []
    if isinstance(v, bool):
        cls.append("ok" if v else "bad")
    if v == HIGH_BIAS:
        cls.append("hb")
    if sticky:
        cls.append(sticky)
    attrs = (f' class="{" ".join(cls)}"' if cls else "") + (f' style="{style}"' if style else "")
    if tip:
        attrs += f' title="{esc(tip)}"'
    return f"<td{attrs}>{esc(text)}</td>"


def _sticky(columns: list[str]) -> dict[int, str]:
    """The leading label columns that stick to the left edge: s0, s1, ... (fixed widths in the CSS)."""
    out = {}
    for i, c in enumerate(columns[:3]):
        if c not in STICKY_KEYS:
            break
        out[i] = f"s{i}"
    return out or {0: "s0w"}                      # else the first column, whatever its width


def _row_attrs(table: Table, r: list, prev: list | None) -> str:
    """data-* for the jump box and the position chooser, and a separator where a group starts."""
    attrs = ""
    for key, name in (("layer", "l"), ("head", "h"), ("neuron", "n")):
        if key in table.columns and r[table.columns.index(key)] is not None:
            attrs += f' data-{name}="{r[table.columns.index(key)]}"'
    if table.select:
        attrs += f' data-sel="{esc(r[table.columns.index(table.select)])}"'
    if table.group_by and prev is not None:
        gi = [table.columns.index(c) for c in table.group_by]
        if any(r[i] != prev[i] for i in gi):
            attrs += ' class="sep"'
    return attrs


def _flat_html(table: Table) -> str:
    rows = table.rows if table.html_when is None else [r for r in table.rows if table.html_when(r)]
    n_all = len(rows)
    rows = rows if table.html_limit is None else rows[: table.html_limit]
    shown = [i for i, c in enumerate(table.columns) if table.html_columns is None or c in table.html_columns]
    sticky = _sticky([table.columns[i] for i in shown])
    head = "".join(f'<th class="{sticky[j]}">{esc(table.columns[i])}</th>' if j in sticky else
                   f"<th>{esc(table.columns[i])}</th>" for j, i in enumerate(shown))
    tips = {table.columns.index(c): f for c, f in table.tips.items()}
    body = []
    prev = None
    for r in rows:
        cells = "".join(_cell(table, table.columns[i], r[i],
                              tips[i](r) if i in tips and r[i] not in (None, "", "--") else None, sticky.get(j, ""))
                        for j, i in enumerate(shown))
        body.append(f"<tr{_row_attrs(table, r, prev)}>{cells}</tr>")
        prev = r
    more = ""
    if len(rows) < n_all:
        more = (f'<p class="more">Showing the first {len(rows)} of {n_all} rows; '
                f'{n_all - len(rows)} more are in {esc(table.name)}.csv.</p>')
    chooser = ""
    if table.select:
        si = table.columns.index(table.select)
        ti = table.columns.index("token") if "token" in table.columns else None
        values = dict.fromkeys((r[si], "" if ti is None else f": {r[ti]}") for r in rows)
        opts = "".join(f'<option value="{esc(v)}">{esc(v)}{esc(t)}</option>' for v, t in values)
        chooser = (f'<p class="chooser" hidden><label>{esc(table.select)} <select data-chooser>{opts}</select>'
                   "</label></p>")
    return (f'{chooser}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body)
            + f"\n</tbody></table></div>{more}")


def _pivot_html(table: Table) -> str:
    """Rows keyed by the pivot's key columns, one column per value of its column key (the essay's sheet layout)."""
    keys, col_key, value = table.pivot
    ki = [table.columns.index(k) for k in keys]
    ci, vi, ti = table.columns.index(col_key), table.columns.index(value), table.columns.index("token")
    tip = table.tips.get(value)
    grid, cols = {}, {}
    for r in table.rows:
        if table.html_limit is not None and r[ci] not in cols and len(cols) >= table.html_limit:
            continue                                        # only the first html_limit column keys
        grid.setdefault(tuple(r[i] for i in ki), {})[r[ci]] = r
        cols[r[ci]] = r[ti]
    head = ("".join(f'<th class="s{i}">{esc(k)}</th>' for i, k in enumerate(keys))
            + "".join(f"<th>{esc(c)}:{esc(t)}</th>" for c, t in cols.items()))
    body = []
    for key, cells in grid.items():
        attrs = "".join(f' data-{k[0]}="{v}"' for k, v in zip(keys, key) if k in ("layer", "head", "neuron"))
        tds = "".join(f'<td class="num s{i}">{esc(k)}</td>' for i, k in enumerate(key))
        for c in cols:
            r = cells.get(c)
            v = "" if r is None else r[vi]
            cls = "hb" if v == HIGH_BIAS else "words"
            title = f' title="{esc(tip(r))}"' if tip and r is not None else ""
            tds += f'<td class="{cls}"{title}>{esc(v)}</td>'
        body.append(f"<tr{attrs}>{tds}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body)
            + "\n</tbody></table></div>")


BLOCK_TITLES = 20_000   # a block grid's cells carry their value as a tooltip up to this many cells


def _blocks_html(table: Table) -> str:
    """A grid of small heat maps, one per block key (e.g. one per head). Cells are classes h0..h10 (the
    value in tenths, coloured as the heat map), with the value as a tooltip while the grid is small."""
    ki = [table.columns.index(k) for k in table.blocks]
    ri = len(table.blocks)                                  # the row label column follows the keys
    hi = [table.columns.index(c) for c in table.heat]
    rows = table.rows if table.html_limit is None else table.rows[: table.html_limit]
    titles = len(rows) * len(hi) <= BLOCK_TITLES
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[i] for i in ki), []).append(r)
    parts = []
    for key, rs in groups.items():
        name = " ".join(f"{k[0].upper()}{v}" for k, v in zip(table.blocks, key))
        body = []
        for r in rs:
            tds = []
            for i in hi:
                v = r[i]
                if v is None:
                    tds.append("<td></td>")
                    continue
                title = f' title="{esc(table.columns[i])}: {v:.3f}"' if titles else ""
                tds.append(f'<td class="h{min(10, max(0, round(v * 10)))}"{title}></td>')
            body.append(f'<tr><th class="q">{esc(r[ri])}</th>{"".join(tds)}</tr>')
        parts.append(f'<figure class="blk"><figcaption>{esc(name)}</figcaption><table class="grid">'
                     f'{"".join(body)}</table></figure>')
    return f'<div class="blocks">{"".join(parts)}</div>'


def table_html(table: Table) -> str:
    """The table's block: its title and reading guide, the tables shown before it (each with its own title
    and guide), then its rows."""
    before = "".join(f'<h3>{esc(t.title)}</h3><p class="note">{esc(t.note)}</p>{_body_html(t)}'
                     for t in table.before)
    return (f'<div class="mg2"><h2>{esc(table.title)}</h2><p class="note">{esc(table.note)}</p>{before}'
            + ("<h3>Rows</h3>" if before else "") + f"{_body_html(table)}</div>")


def _body_html(table: Table) -> str:
    return _pivot_html(table) if table.pivot else _blocks_html(table) if table.blocks else _flat_html(table)


# Every rule is scoped to .mg2r, so the report can sit inside a Jupyter notebook without restyling it.
