"""The page's layout of each table, decided by the table's name: which rows and columns the HTML shows,
as what (a pivot, a grid of heat maps, a heat-mapped list), and which column's cells carry tooltips.

The CSV always has every row; a Table carries no page settings. A layout may read the table (its token
columns say how long the prompt is), never anything else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

# The format follows the size: a long prompt keeps every value in the CSV, but not as one page cell each.
TOKEN_COLUMNS = 64              # a table with a column per token shows those columns in the page up to this T
ATTENDED_HTML_CELLS = 60_000    # attended: the page's cells (a browser stays responsive, and the page small)
HEAD_VIEW_ROWS = 4000           # attended beyond TOKEN_COLUMNS: the head view's rows (whole heads, no query columns)
STREAM_PAGE = 5                 # streams: the page's largest heads and neurons per position

SCORES = " (scores)"


def scores_column(column: str) -> str:
    """The column that holds the Scored values (the words with their scores) behind `column`: the page shows
    each as the tooltip of that column's cell in its row, never as a column of its own."""
    return column + SCORES


def is_scores_column(column: str) -> bool:
    return column.endswith(SCORES)


@dataclass(frozen=True)
class Layout:
    heat: tuple[str, ...] = ()          # columns shown as a heat map (0 white, 0.5 green, >=1 red)
    limit: int | None = None            # the page shows the first rows only (a pivot: its first column keys)
    pivot: tuple | None = None          # (row key columns, column key, value column), the essay's sheet layout
    zeros_as_dashes: bool = False       # exact 0.0 displays as "--" (as in the essay)
    blocks: tuple[str, ...] = ()        # one small heat map per value of these key columns (rows: the column
                                        #   after them; cells: the heat columns, no text)
    group_by: tuple[str, ...] = ()      # a separator line where these columns change (e.g. each head)
    select: str | None = None           # a chooser that shows the rows of one value of this column
    columns: tuple[str, ...] | None = None   # the page shows only these columns
    when: Callable[[list], bool] | None = None   # the page shows only the rows for which this is true
    before: tuple[str, ...] = ()        # tables (by name) shown above this one in its tab, not as tabs of their own
    figures: tuple[str, ...] = ()       # one figure per value of these key columns (the head view: a head's
                                        #   sources as rows, its queries as heat-map columns), one shown at a time
    order: str = ""                     # how the rows are ranked, said where the page shows only the first ones
    tokens: tuple[str, ...] = ()        # columns of raw tokens, shown as every tab shows tokens (·word, ⏎)
    text: tuple[str, ...] = ()          # columns of raw text (a prefix): newlines shown as ⏎, not as breaks


_TOKEN = re.compile(r"\d+:")            # "3:·home": the column of the prompt's token 3


def token_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if _TOKEN.match(c)]


def _head_vectors(t) -> Layout:         # patterns, messages: a row per head, a column per token, layers apart
    return Layout(pivot=(("layer", "head"), "pos", "words"), limit=TOKEN_COLUMNS, group_by=("layer",))


def _attended(t) -> Layout:
    tokens = token_columns(t.columns)
    T = len(tokens)
    wide = T <= TOKEN_COLUMNS
    return Layout(heat=tuple(tokens) + tuple(c for c in t.columns if "attention" in c), figures=("layer", "head"),
                  limit=max(T, ATTENDED_HTML_CELLS // (T + 8) // T * T) if wide else max(T, HEAD_VIEW_ROWS // T * T),
                  columns=None if wide else tuple(c for c in t.columns if c not in tokens))


def _neurons(t) -> Layout:
    return Layout(heat=tuple(token_columns(t.columns)), limit=150, zeros_as_dashes=True, order="largest effect")


def _bos_neurons(t) -> Layout:
    tokens = token_columns(t.columns)                     # input words before output words, as in the neurons tab
    first = [c for c in t.columns if c not in tokens and c not in ("input words", "output words")]
    words = [c for c in ("input words", "output words") if c in t.columns]
    return Layout(heat=tuple(tokens), zeros_as_dashes=True,
                  columns=tuple(first[:4] + words + first[4:] + (tokens if len(tokens) <= TOKEN_COLUMNS else [])))


def _evolution(t) -> Layout:
    tokens = token_columns(t.columns)
    return Layout(columns=None if len(tokens) <= TOKEN_COLUMNS else
                  tuple(c for c in t.columns if c not in tokens) + tuple(tokens[:TOKEN_COLUMNS]))


def _streams(t) -> Layout:
    by, rank = t.columns.index("by"), t.columns.index("rank")
    return Layout(select="pos", group_by=("pos",),
                  when=lambda r: r[by] == "kind" or (r[rank] is not None and r[rank] <= STREAM_PAGE))


def _grid(*keys: str) -> Callable:      # attention, position0: a small heat map per head
    return lambda t: Layout(heat=tuple(token_columns(t.columns)), blocks=keys)


def _selected(t) -> Layout:             # heads: attention from each query; neurons: activation at each token
    tokens = token_columns(t.columns)
    return Layout(figures=("layer", "head"), heat=tuple(tokens[:TOKEN_COLUMNS]) + ("attention received",),
                  zeros_as_dashes=True,
                  columns=None if len(tokens) <= TOKEN_COLUMNS else
                  tuple(c for c in t.columns if c not in tokens[TOKEN_COLUMNS:]))


LAYOUTS: dict[str, Layout | Callable] = {
    "selected": _selected,
    "patterns": _head_vectors, "messages": _head_vectors,
    "attended": _attended,
    "neurons": _neurons, "bos_neurons": _bos_neurons,
    "evolution": _evolution, "evolution_top10": _evolution,
    "stream": Layout(limit=200, before=("stream_rollup",), order="largest |direct effect|"),
    "streams": _streams,
    "attention": _grid("layer", "head"), "position0": _grid("head"),
    "attention_on_0": lambda t: Layout(heat=tuple(c for c in t.columns if c != "layer")),
    "effects": Layout(limit=200, order="largest |total effect|"),
    "predictions": Layout(tokens=("predicted", "actual next"), text=("prefix",)),
    "corpus_heads": Layout(heat=("corpus attention on 0",), group_by=("layer",)),
}


def layout_of(table) -> Layout:
    """The page layout of a table, by its name (a table the page does not know: every row, as it is)."""
    found = LAYOUTS.get(table.name, Layout())
    return found if isinstance(found, Layout) else found(table)
