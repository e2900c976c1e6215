"""The report: tables as one self-contained HTML page (no CDN, works offline) beside each table's CSV
(Table.to_csv) and any arrays (.npy), written by analysis.report.writer (atomically, and only ever replacing
the report's own files). Each table is a tab, unless its layout shows it inside another's."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .html import esc, heat_colour, table_html
from .layout import layout_of
from .pagedata import data_block
from .script import SCRIPT
from .style import CSS, tab_css
from .table import Table
from .writer import write_folder

LEGEND = ('<div class="legend">heat maps: ' + "".join(
    f'<span><span class="sw" style="{heat_colour(v)}"></span> {v:g}</span>' for v in (0, 0.25, 0.5, 0.75, 1))
    + ' and above · predictions: <span><span class="sw" style="background:#d3f0de"></span> correct</span> '
      '<span><span class="sw" style="background:#f6d5d1"></span> wrong</span> · <i>(high bias)</i>: hover for '
      "the hidden words · tokens: ·word is a leading space, ⏎ a newline</div>")

TOOLS = ('<div class="tools" hidden><label>Jump to <input data-jump placeholder="5-10, L2 N666 or a word">'
         '</label><label>Filter rows <input data-filter placeholder="text, or 5-10 / L2 N666"></label>'
         "<output data-status></output></div>")

RANDOM_BANNER = "Random weights (made by minigpt2 make-checkpoint): the words mean nothing."

# Tabs only the script can fill (hidden without it): the token view and the neuron card.
SCRIPT_TABS = (("token_view", "Token view", '<div class="mg2"><h2>Token view</h2><p class="note">One token\'s '
                "pattern and message words at every head of one layer (the essay's layer-0 'home' table). Click "
                "a token's label in any tab, or type the word in the jump box.</p><div class=\"tvbody\"></div></div>"),
               ("neuron_card", "Neuron card", '<div class="mg2"><h2>Neuron card</h2><p class="note">Any neuron of '
                "the model: its input words (what it looks for), output words (what it writes), negative output "
                "words (what a negative activation writes; these never change with the prompt) and this prompt's "
                'activation at each token.</p><p class="chooser"><label>Neuron <input data-ncq placeholder="L2 N666">'
                '</label> <span class="hint">(Enter)</span></p><div class="ncbody"></div></div>'))


TITLE_CHARS = 120   # a long prompt's title is cut here (predictions.csv has every prefix)


def _short(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


def report_html(title: str, subtitle: str, tables: list[Table], uid: str = "", script: bool = False,
                data: dict | None = None, random_weights: bool = False) -> str:
    """The report as one scoped block: header, the tools bar (jump, filter, tabs; it stays on screen), then a
    panel per table, the first one open. uid prefixes the tab ids, so several reports can share a page (a
    notebook); the standalone page uses none, so index.html#stream works. script: the jump box, filter,
    sorting, head chooser, token view and neuron card; data: what they read (tokens, L, H, cards; see
    pagedata.data_block). random_weights: a banner says the words mean nothing."""
    inside = {name for t in tables for name in layout_of(t).before}      # shown in another table's tab
    by_name = {t.name: t for t in tables}
    tabs = [(t.name, t.title, table_html(t, by_name)) for t in tables if t.name not in inside]
    if script:
        tabs += list(SCRIPT_TABS)
    ids = [esc(uid + name) for name, _, _ in tabs]
    radios = "".join(f'<input type="radio" name="{esc(uid)}tab" id="{i}"{" checked" if n == 0 else ""} '
                     f'aria-label="{esc(title)}">' for n, (i, (_, title, _)) in enumerate(zip(ids, tabs)))
    labels = "".join(f'<label for="{i}"{" class=js" if name in dict((n, 0) for n, _, _ in SCRIPT_TABS) else ""}'
                     f' tabindex="0">{esc(title)}</label>' for i, (name, title, _) in zip(ids, tabs))
    panels = "".join(f'<div class="panel" id="p-{i}">{body}</div>' for i, (_, _, body) in zip(ids, tabs))
    banner = f'<div class="random" role="alert">{esc(RANDOM_BANNER)}</div>' if random_weights else ""
    d = data or {}
    block = data_block(uid, d.get("tokens", []), d.get("L", 0), d.get("H", 0), d.get("cards")) if script else ""
    return (f'<div class="mg2r"><style>{CSS}{tab_css(ids)}</style>{banner}<header><h1>{esc(_short(title))}</h1>'
            f'<p>{esc(subtitle)}</p>{LEGEND}</header>{radios}<div class="bar">{TOOLS if script else ""}'
            f'<nav class="tabs">{labels}</nav></div><div class="panels">{panels}</div>'
            f'{block}{SCRIPT if script else ""}</div>')


def page_html(title: str, subtitle: str, tables: list[Table], data: dict | None = None,
              random_weights: bool = False) -> str:
    """index.html: a self-contained page (no CDN, works offline)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(_short(title))}</title>'
            "<style>body{margin:0;background:#fafafa}</style></head>"
            f"<body>{report_html(title, subtitle, tables, script=True, data=data, random_weights=random_weights)}"
            "</body></html>\n")


def _npy(arr):
    def write(path):
        with open(path, "wb") as f:          # a file object: np.save would append .npy to a temporary name
            np.save(f, arr)
    return write


def write_report(out: str | Path, title: str, subtitle: str, tables: list[Table], arrays: dict | None = None,
                 force: bool = False, progress: bool = False, data: dict | None = None,
                 random_weights: bool = False) -> Path:
    """index.html, one CSV per table and each array as .npy ({file name: array}), written into out by
    analysis.report.writer's rules (its own files only). progress: a bar on stderr, once writing has taken a
    second."""
    from minigpt2.progress import tqdm

    files = {f"{t.name}.csv": t.to_csv for t in tables}
    files.update({name: _npy(arr) for name, arr in (arrays or {}).items()})
    files["index.html"] = lambda path: path.write_text(page_html(title, subtitle, tables, data, random_weights),
                                                            encoding="utf-8")
    with tqdm(total=len(files), desc="writing", unit="file", disable=not progress, leave=False, delay=1) as bar:
        def counted(write):
            def run(path):
                write(path)
                bar.update()
            return run
        return write_folder(out, {name: counted(write) for name, write in files.items()}, force=force)
