"""A table as HTML: its block on the page (title, reading guide, rows), drawn as its layout says
(analysis.report.layout), with the Scored columns as the tooltips of the cells they belong to."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..search.matches import HIGH_BIAS
from .cells import display, esc, heat_class, heat_colour, shown_text, shown_token, tip_text  # noqa: F401 (re-exported)
from .heads import heads_html
from .style import CSS
from .layout import Layout, is_scores_column, layout_of, scores_column


STICKY_KEYS = ("layer", "head", "neuron", "pos", "source", "query")   # label columns that stay in view


def _cell(lay: Layout, col: str, v, tip: str | None = None, sticky: str = "") -> str:
    style = heat_colour(v) if col in lay.heat and v is not None else ""
    text = display(shown_token(v) if col in lay.tokens else shown_text(v) if col in lay.text else v,
                   lay.zeros_as_dashes)
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


def _row_attrs(table, lay: Layout, r: list, prev: list | None) -> str:
    """data-* for the jump box and the position chooser, and a separator where a group starts."""
    attrs = ""
    for key, name in (("layer", "l"), ("head", "h"), ("neuron", "n")):
        if key in table.columns and r[table.columns.index(key)] is not None:
            attrs += f' data-{name}="{r[table.columns.index(key)]}"'
    if lay.select:
        attrs += f' data-sel="{esc(r[table.columns.index(lay.select)])}"'
    if lay.group_by and prev is not None:
        gi = [table.columns.index(c) for c in lay.group_by]
        if any(r[i] != prev[i] for i in gi):
            attrs += ' class="sep"'
    return attrs


def _pos_attr(column: str) -> str:
    """A token column's header carries its position: clicking it opens that token's view."""
    head = column.split(":", 1)[0]
    return f' data-pos="{head}"' if ":" in column and head.isdigit() else ""


def _tip_index(table, column: str) -> int | None:
    name = scores_column(column)
    return table.columns.index(name) if name in table.columns else None


def _flat_html(table, lay: Layout) -> str:
    rows = table.rows if lay.when is None else [r for r in table.rows if lay.when(r)]
    n_all = len(rows)
    rows = rows if lay.limit is None else rows[: lay.limit]
    shown = ([i for i, c in enumerate(table.columns) if not is_scores_column(c)] if lay.columns is None else
             [table.columns.index(c) for c in lay.columns if c in table.columns and not is_scores_column(c)])
    sticky = _sticky([table.columns[i] for i in shown])
    head = "".join(f'<th class="{sticky[j]}"{_pos_attr(table.columns[i])}>{esc(table.columns[i])}</th>' if j in sticky
                   else f"<th{_pos_attr(table.columns[i])}>{esc(table.columns[i])}</th>" for j, i in enumerate(shown))
    tips = {i: t for i in shown if (t := _tip_index(table, table.columns[i])) is not None}
    body = []
    prev = None
    for r in rows:
        cells = "".join(_cell(lay, table.columns[i], r[i],
                              tip_text(r[tips[i]]) if i in tips and r[tips[i]] is not None
                              and r[i] not in (None, "", "--") else None, sticky.get(j, ""))
                        for j, i in enumerate(shown))
        body.append(f"<tr{_row_attrs(table, lay, r, prev)}>{cells}</tr>")
        prev = r
    more = ""
    if len(rows) < n_all:
        which = f"the {len(rows)} rows of {esc(lay.order)}" if lay.order else f"the first {len(rows)}"
        more = (f'<p class="more">Showing {which} of {n_all} rows; '
                f'{n_all - len(rows)} more are in {esc(table.name)}.csv.</p>')
    chooser = ""
    if lay.select:
        si = table.columns.index(lay.select)
        ti = table.columns.index("token") if "token" in table.columns else None
        values = dict.fromkeys((r[si], "" if ti is None else f": {r[ti]}") for r in rows)
        opts = "".join(f'<option value="{esc(v)}">{esc(v)}{esc(t)}</option>' for v, t in values)
        chooser = (f'<p class="chooser" hidden><label>{esc(lay.select)} <select data-chooser>{opts}</select>'
                   "</label></p>")
    return (f'{chooser}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body)
            + f"\n</tbody></table></div>{more}")


def _pivot_html(table, lay: Layout) -> str:
    """Rows keyed by the pivot's key columns, one column per value of its column key (the essay's sheet layout)."""
    keys, col_key, value = lay.pivot
    ki = [table.columns.index(k) for k in keys]
    ci, vi, ti = table.columns.index(col_key), table.columns.index(value), table.columns.index("token")
    tip = _tip_index(table, value)
    grid, cols = {}, {}
    for r in table.rows:
        if lay.limit is not None and r[ci] not in cols and len(cols) >= lay.limit:
            continue                                        # only the first `limit` column keys
        grid.setdefault(tuple(r[i] for i in ki), {})[r[ci]] = r
        cols[r[ci]] = r[ti]
    head = ("".join(f'<th class="s{i}">{esc(k)}</th>' for i, k in enumerate(keys))
            + "".join(f'<th data-pos="{esc(c)}">{esc(c)}:{esc(t)}</th>' for c, t in cols.items()))
    body = []
    gi = [keys.index(k) for k in lay.group_by if k in keys]
    prev = None
    for key, cells in grid.items():
        attrs = "".join(f' data-{k[0]}="{v}"' for k, v in zip(keys, key) if k in ("layer", "head", "neuron"))
        if prev is not None and any(key[i] != prev[i] for i in gi):
            attrs += ' class="sep"'
        prev = key
        tds = "".join(f'<td class="num s{i}">{esc(k)}</td>' for i, k in enumerate(key))
        for c in cols:
            r = cells.get(c)
            v = "" if r is None else r[vi]
            cls = "hb" if v == HIGH_BIAS else "words"
            title = (f' title="{esc(tip_text(r[tip]))}"'
                     if tip is not None and r is not None and r[tip] is not None else "")
            tds += f'<td class="{cls}"{title}>{esc(v)}</td>'
        body.append(f"<tr{attrs}>{tds}</tr>")
    return (f'<div class="scroll"><table class="pv"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body)
            + "\n</tbody></table></div>")


BLOCK_TITLES = 4_000   # a block grid's cells carry their value as a tooltip up to this many cells


def _blocks_html(table, lay: Layout) -> str:
    """A grid of small heat maps, one per block key (e.g. one per head). Cells are classes h0..h10 (the
    value in tenths, coloured as the heat map), with the value as a tooltip while the grid is small."""
    ki = [table.columns.index(k) for k in lay.blocks]
    ri = len(lay.blocks)                                    # the row label column follows the keys
    hi = [table.columns.index(c) for c in lay.heat]
    rows = table.rows if lay.limit is None else table.rows[: lay.limit]
    titles = len(rows) * len(hi) <= BLOCK_TITLES
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[i] for i in ki), []).append(r)
    parts = []
    for key, rs in groups.items():
        name = " ".join(f"{k[0].upper()}{v}" for k, v in zip(lay.blocks, key))
        body = []
        for r in rs:
            tds = []
            for i in hi:
                v = r[i]
                if v is None:
                    tds.append("<td></td>")
                    continue
                title = f' title="{esc(table.columns[i])}: {v:.3f}"' if titles else ""
                tds.append(f"<td class={heat_class(v)}{title}></td>")        # unquoted: thousands of cells
            body.append(f'<tr><th class="q">{esc(r[ri])}</th>{"".join(tds)}</tr>')
        data = "".join(f' data-{k[0]}="{v}"' for k, v in zip(lay.blocks, key) if k in ("layer", "head"))
        parts.append(f'<figure class="blk"{data}><figcaption>{esc(name)}</figcaption><table class="grid">'
                     f'{"".join(body)}</table></figure>')
    return f'<div class="blocks">{"".join(parts)}</div>'


def table_html(table, tables: dict | None = None) -> str:
    """The table's block: its title and reading guide, the tables its layout shows before it (each with its
    own title and guide; found by name in `tables`, the report's), then its rows."""
    lay = layout_of(table)
    above = [tables[n] for n in lay.before if n in tables] if tables else []
    before = "".join(f'<h3>{esc(t.title)}</h3><p class="note">{esc(t.note)}</p>{_body_html(t, layout_of(t))}'
                     for t in above)
    return (f'<div class="mg2"><h2>{esc(table.title)}</h2><p class="note">{esc(table.note)}</p>{before}'
            + ("<h3>Rows</h3>" if before else "") + f"{_body_html(table, lay, tables)}</div>")


def _split_html(table, lay: Layout, tables: dict | None) -> str:
    """The selection: its heads as head-view figures (all shown), its neurons as a list with heat-mapped
    activation columns (as the essay's neuron figure)."""
    hi, ni = table.columns.index("head"), table.columns.index("neuron")
    heads = replace(table, rows=[r for r in table.rows if r[hi] is not None])
    neurons = replace(table, rows=[r for r in table.rows if r[ni] is not None])
    tokens = [c for c in table.columns if c in lay.heat and c != "attention received"]
    out = ""
    if heads.rows:
        out += "<h3>Heads</h3>" + heads_html(heads, lay, tables, chooser=False)
    if neurons.rows:
        keep = ("layer", "neuron", "input words", "output words", *tokens)
        out += "<h3>Neurons</h3>" + _flat_html(neurons, replace(lay, figures=(), columns=keep, group_by=()))
    return out


def _body_html(table, lay: Layout, tables: dict | None = None) -> str:
    if lay.figures and "neuron" in table.columns:
        return _split_html(table, lay, tables)
    if lay.figures:
        return heads_html(table, lay, tables)
    return _pivot_html(table, lay) if lay.pivot else _blocks_html(table, lay) if lay.blocks else _flat_html(table, lay)


def styled_html(table) -> str:
    """One table on its own (a notebook's Table): its block with the page's CSS, scoped to it."""
    return f'<div class="mg2r"><style>{CSS}</style>{table_html(table)}</div>'
