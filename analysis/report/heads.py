"""The head view: one figure per attention head, as the essay's "trifecta" figure draws head 5-10.

A head's figure has a row per source token (its pattern words and message words) and, as a heat map, the
attention each query gave it, under column headers that are the query tokens; its caption says how much
the head attends to position 0 and, in layer 0, its position-0 bias from the position embeddings alone.
With a corpus store (analyze --corpus), the head's strongest corpus events follow its patterns and messages.
The page's script shows one figure at a time (a head chooser, the jump box); without script every figure
is a static table, one under the other.
"""
from __future__ import annotations

from .cells import display, esc, heat_class
from .layout import Layout, token_columns


def _position0_bias(tables: dict) -> dict[int, float]:
    """{head: mean attention on key 0 over queries 1.. from W_pos alone} for layer 0 (the position0 table)."""
    t = tables.get("position0")
    if t is None:
        return {}
    keys = token_columns(t.columns)
    if len(keys) < 2:
        return {}
    hi, qi, k0 = t.columns.index("head"), t.columns.index("query"), t.columns.index(keys[0])
    got: dict[int, list[float]] = {}
    for r in t.rows:
        if r[qi] != keys[0] and r[k0] is not None:
            got.setdefault(r[hi], []).append(float(r[k0]))
    return {h: sum(v) / len(v) for h, v in got.items()}


def _attention_on_0(tables: dict) -> dict[tuple[int, int], float]:
    t = tables.get("attention_on_0")
    if t is None:
        return {}
    li = t.columns.index("layer")
    return {(r[li], int(c.split()[-1])): r[i] for r in t.rows for i, c in enumerate(t.columns)
            if c.startswith("head ") and r[i] is not None}


def _corpus_events(tables: dict) -> dict[tuple[int, int], tuple]:
    """{(layer, head): (mean attention on 0, [its top events])} from the corpus_heads table (analyze --corpus)."""
    t = tables.get("corpus_heads")
    if t is None:
        return {}
    li, hi, oi = (t.columns.index(c) for c in ("layer", "head", "corpus attention on 0"))
    ci = [i for i, c in enumerate(t.columns) if c.startswith("corpus #")]
    return {(r[li], r[hi]): (r[oi], [r[i] for i in ci if r[i]]) for r in t.rows}


def _corpus_html(events: tuple | None) -> str:
    """A head's corpus events under its patterns and messages (nothing without --corpus)."""
    if events is None:
        return ""
    on0, top = events
    said = "" if on0 is None else f": mean attention on position 0, <strong>{on0:.2f}</strong>"
    items = "".join(f"<li>{esc(e)}</li>" for e in top) or "<li>none</li>"
    return (f'<div class="corpus"><p><strong>In the corpus</strong>{said}. Its strongest attention to a source '
            f"other than position 0 (the source between ⟨ ⟩, the query between ⟦ ⟧, the weight):</p><ol>{items}"
            "</ol></div>")


def _caption(l: int, h: int, on0: dict, bias0: dict) -> str:
    parts = [f"<strong>Head {l}-{h}</strong> (L{l} H{h})"]
    if (l, h) in on0:
        parts.append(f"attention on position 0: <strong>{on0[l, h]:.2f}</strong> (mean over later queries)")
    if l == 0 and h in bias0:
        parts.append(f"position-0 bias: <strong>{bias0[h]:.2f}</strong> (the same, from the position embeddings alone)")
    return " · ".join(parts)


def heads_html(table, lay: Layout, tables: dict | None, chooser: bool = True) -> str:
    """Every head of the table (its rows grouped by lay.figures, in the table's order) as a figure; chooser:
    the script shows one at a time (the attended tab), else all (the selected heads)."""
    tables = tables or {}
    cols = table.columns
    li, hi = cols.index("layer"), cols.index("head")
    si, ti = cols.index("source" if "source" in cols else "pos"), cols.index("token")
    words = [(cols.index(c), c) for c in ("pattern", "message", "pattern words", "message words") if c in cols]
    shown = set(lay.columns) if lay.columns is not None else set(cols)
    tokens = token_columns(cols)
    queries = [c for c in tokens if c in shown]
    others = [c for c in cols if c in lay.heat and c in shown and c not in tokens]   # the per-source summaries
    qi, oi = [cols.index(c) for c in queries], [cols.index(c) for c in others]
    rows = table.rows if lay.limit is None else table.rows[: lay.limit]
    on0, bias0, corpus = _attention_on_0(tables), _position0_bias(tables), _corpus_events(tables)
    groups: dict = {}
    for r in rows:
        groups.setdefault((r[li], r[hi]), []).append(r)
    head = ('<th class="s0">source</th>' + "".join(f'<th class="pw">{esc(c)}</th>' for _, c in words)
            + "".join(f'<th class="sm">{esc(c)}</th>' for c in others)
            + "".join(f'<th data-pos="{esc(c.split(":")[0])}"><span>{esc(c)}</span></th>' for c in queries))
    figs = []
    for (l, h), rs in groups.items():
        body = []
        for r in rs:
            tds = [f'<td class=tok data-pos="{r[si]}">{r[si]}:{esc(r[ti])}</td>']    # a page holds
            tds += [f'<td class="{"hb " if r[i] == "(high bias)" else ""}pw">{esc(r[i])}</td>' for i, _ in words]
            tds += ["<td></td>" if r[i] is None else                                  # thousands: short cells
                    f"<td class={heat_class(r[i])}>{esc(display(r[i], digits=2))}</td>" for i in oi + qi]
            body.append(f'<tr>{"".join(tds)}</tr>')
        figs.append(f'<figure class="head" data-l="{l}" data-h="{h}"><figcaption>{_caption(l, h, on0, bias0)}'
                    f'</figcaption><div class="scroll"><table class="hv"><thead><tr>{head}</tr></thead><tbody>'
                    + "".join(body) + f"</tbody></table></div>{_corpus_html(corpus.get((l, h)))}</figure>")
    n_heads = len({(r[li], r[hi]) for r in table.rows})
    more = "" if len(groups) == n_heads else (
        f'<p class="more">The page has {len(groups)} of the {n_heads} heads in {esc(table.name)}.csv (the first, '
        "in its order).</p>")
    if not chooser:
        return f'<div class="heads">{"".join(figs)}</div>{more}'
    pick = ('<p class="chooser hvpick" hidden><label>head <select data-headpick>'
               + "".join(f'<option value="{l}-{h}">{l}-{h}</option>' for l, h in groups)
               + '</select></label> <button type="button" data-step="-1">◀ previous</button> '
               '<button type="button" data-step="1">next ▶</button> <span class="hint">or type 5-10 in the jump '
               "box; click a source token for its token view</span></p>")
    return f'{pick}<div class="heads">{"".join(figs)}</div>{more}'
