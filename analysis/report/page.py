"""The report: tables as one self-contained HTML page (no CDN, works offline) beside each table's CSV
(Table.to_csv) and any arrays (.npy), written by analysis.report.writer (atomically, and only ever replacing
the report's own files). Each table is a tab, unless its layout shows it inside another's."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .html import esc, heat_colour, table_html
from .layout import layout_of
from .table import Table
from .writer import write_folder

CSS = """
.mg2r{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222}
.mg2r header{padding:14px 20px;background:#1f3b57;color:#fff}.mg2r header h1{margin:0;font-size:20px;color:#fff}
.mg2r header p{margin:4px 0 0;font-size:13px;opacity:.9}
.mg2r .legend{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-top:6px;font-size:12px}
.mg2r .legend span.sw{display:inline-block;width:22px;height:12px;border:1px solid #999;vertical-align:middle}
.mg2r .tools{display:flex;gap:12px;align-items:center;padding:6px 20px;background:#f4f6f8;font-size:13px}
.mg2r .tools input{font-size:13px;padding:2px 6px;width:190px}.mg2r .tools output{color:#555}
.mg2r .tabs{display:flex;flex-wrap:wrap;padding:0 12px;background:#e8edf2;border-bottom:1px solid #c9d3dd}
.mg2r .tabs>input{display:none}
.mg2r .tabs>label{padding:9px 14px;cursor:pointer;font-size:14px;border-bottom:3px solid transparent}
.mg2r .tabs>input:checked+label{border-bottom-color:#1f3b57;font-weight:600;background:#fff}
.mg2r .panel{display:none;width:100%;padding:12px 8px;background:#fff;order:99;box-sizing:border-box}
.mg2r .tabs>input:checked+label+.panel{display:block}
.mg2r h2{font-size:17px;margin:4px 0}.mg2r h3{font-size:14px;margin:10px 0 2px}
.mg2r .note{font-size:13px;color:#555;max-width:1100px}
.mg2r .scroll{overflow:auto;max-height:calc(100vh - 140px);border:1px solid #d8dde3}
.mg2r table{border-collapse:separate;border-spacing:0;font-size:12px}
.mg2r th,.mg2r td{border-right:1px solid #d8dde3;border-bottom:1px solid #d8dde3;padding:3px 6px;
  vertical-align:top;text-align:left;background-clip:padding-box}
.mg2r thead th{background:#f0f3f6;position:sticky;top:0;z-index:2;white-space:pre}
.mg2r .s0,.mg2r .s1,.mg2r .s2,.mg2r .s0w{position:sticky;z-index:1;background:#f7f9fb}
.mg2r .s0,.mg2r .s1,.mg2r .s2{width:58px;min-width:58px;max-width:58px;box-sizing:border-box}
.mg2r .s0,.mg2r .s0w{left:0}.mg2r .s1{left:58px}.mg2r .s2{left:116px}
.mg2r thead th.s0,.mg2r thead th.s1,.mg2r thead th.s2,.mg2r thead th.s0w{z-index:3;background:#e6eaee}
.mg2r td.num{text-align:right;font-variant-numeric:tabular-nums}
.mg2r td{white-space:pre-wrap;max-width:420px}.mg2r td.hb{color:#999;font-style:italic}
.mg2r td.ok{background:#d3f0de}.mg2r td.bad{background:#f6d5d1}
.mg2r tr.sep>td,.mg2r tr.sep>th{border-top:3px solid #1f3b57}
.mg2r tr.hit>td{outline:2px solid #e0a000;outline-offset:-2px}
.mg2r .more{font-size:12px;color:#555}.mg2r [hidden]{display:none !important}
.mg2r .blocks{display:flex;flex-wrap:wrap;gap:10px}.mg2r figure.blk{margin:0}
.mg2r figcaption{font-size:12px;font-weight:600}.mg2r table.grid td{width:9px;height:9px;padding:0}
.mg2r table.grid th.q{font-weight:400;font-size:10px;padding:0 3px;max-width:80px;overflow:hidden}
""" + "".join(f".mg2r table.grid td.h{i}{{{heat_colour(i / 10)}}}\n" for i in range(11)) + """
"""

LEGEND = ('<div class="legend">heat maps: ' + "".join(
    f'<span><span class="sw" style="{heat_colour(v)}"></span> {v:g}</span>' for v in (0, 0.25, 0.5, 0.75, 1))
    + ' and above · predictions: <span><span class="sw" style="background:#d3f0de"></span> correct</span> '
      '<span><span class="sw" style="background:#f6d5d1"></span> wrong</span> · <i>(high bias)</i>: hover for '
      "the hidden words · ·word: a leading space</div>")

TOOLS = ('<div class="tools" hidden><label>Jump to <input data-jump placeholder="5-10, L2 N666 or a word">'
         '</label><label>Filter rows <input data-filter placeholder="text in the row"></label>'
         "<output data-status></output></div>")

# Plain inline script, no CDN: index.html#stream opens a tab; the jump box, the row filter and the position
# chooser. Everything it adds is optional: with script off, the tabs (pure CSS) and every table still read.
SCRIPT = r"""<script>(function(){
var root=document.currentScript.parentNode;
function radios(){return root.querySelectorAll('.tabs>input');}
function panel(){return root.querySelector('.tabs>input:checked+label+.panel');}
function open(p){var r=p.previousElementSibling.previousElementSibling;r.checked=true;refilter();}
function byHash(){var h=location.hash.slice(1);try{h=decodeURIComponent(h);}catch(e){}  /* #% is no tab */
 var t=[].filter.call(radios(),function(r){return r.id===h;})[0];if(h&&t){t.checked=true;refilter();}}
window.addEventListener('hashchange',byHash);
root.querySelector('.tools').hidden=false;
var status=root.querySelector('[data-status]'),filter=root.querySelector('[data-filter]');
function refilter(){var q=filter.value.trim().toLowerCase(),p=panel();if(!p)return;
 p.querySelectorAll('tbody tr').forEach(function(tr){
  var off=tr.dataset.off==='1';tr.hidden=off||(q!==''&&tr.textContent.toLowerCase().indexOf(q)<0);});}
function find(q){var m=/^\s*l?\s*(\d+)\s*(?:-|h)\s*(\d+)\s*$/i.exec(q),n=/^\s*l?\s*(\d+)\s*n\s*(\d+)\s*$/i.exec(q);
 var ps=[panel()].concat([].slice.call(root.querySelectorAll('.panel')));
 for(var i=0;i<ps.length;i++){var p=ps[i],tr=null;if(!p)continue;
  if(n)tr=p.querySelector('tr[data-l="'+n[1]+'"][data-n="'+n[2]+'"]');
  else if(m)tr=p.querySelector('tr[data-l="'+m[1]+'"][data-h="'+m[2]+'"]');
  else{var rows=p.querySelectorAll('tbody tr'),w=q.toLowerCase();
   for(var j=0;j<rows.length&&!tr;j++)if(rows[j].textContent.toLowerCase().indexOf(w)>=0)tr=rows[j];}
  if(tr)return [p,tr];}
 return null;}
root.querySelector('[data-jump]').addEventListener('keydown',function(e){
 if(e.key!=='Enter')return;var q=this.value.trim();if(!q)return;var f=find(q);
 root.querySelectorAll('tr.hit').forEach(function(x){x.classList.remove('hit');});
 if(!f){status.value='not found: '+q;return;}
 open(f[0]);f[1].hidden=false;f[1].classList.add('hit');f[1].scrollIntoView({block:'center'});
 status.value='found in '+f[0].previousElementSibling.textContent;});
filter.addEventListener('input',refilter);
radios().forEach(function(r){r.addEventListener('change',refilter);});
byHash();
root.querySelectorAll('[data-chooser]').forEach(function(s){s.closest('p').hidden=false;
 var rows=s.closest('.mg2').querySelectorAll('tbody tr[data-sel]');
 function pick(){rows.forEach(function(tr){tr.dataset.off=tr.dataset.sel===s.value?'0':'1';});refilter();}
 s.value=s.options[s.options.length-1].value;s.addEventListener('change',pick);pick();});
})();</script>"""


TITLE_CHARS = 120   # a long prompt's title is cut here (predictions.csv has every prefix)


def _short(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


def report_html(title: str, subtitle: str, tables: list[Table], uid: str = "", script: bool = False) -> str:
    """The report as one scoped block: header, then a tab per table, the first one open. uid prefixes the tab
    ids, so several reports can share a page (a notebook); the standalone page uses none, so
    index.html#stream works. script: the jump box, filter and chooser (the page has them)."""
    parts, group = [], f"{uid}tab"
    by_name = {t.name: t for t in tables}
    inside = {name for t in tables for name in layout_of(t).before}      # shown in another table's tab
    for i, t in enumerate([t for t in tables if t.name not in inside]):
        tid = esc(uid + t.name)
        checked = " checked" if i == 0 else ""
        parts.append(f'<input type="radio" name="{group}" id="{tid}"{checked}><label for="{tid}">{esc(t.title)}</label>'
                     f'<div class="panel">{table_html(t, by_name)}</div>')
    return (f'<div class="mg2r"><style>{CSS}</style><header><h1>{esc(_short(title))}</h1><p>{esc(subtitle)}</p>{LEGEND}'
            f'</header>{TOOLS if script else ""}<div class="tabs">{"".join(parts)}</div>'
            f'{SCRIPT if script else ""}</div>')


def page_html(title: str, subtitle: str, tables: list[Table]) -> str:
    """index.html: a self-contained page (no CDN, works offline)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(_short(title))}</title>'
            "<style>body{margin:0;background:#fafafa}</style></head>"
            f"<body>{report_html(title, subtitle, tables, script=True)}</body></html>\n")


def _npy(arr):
    def write(path):
        with open(path, "wb") as f:          # a file object: np.save would append .npy to a temporary name
            np.save(f, arr)
    return write


def write_report(out: str | Path, title: str, subtitle: str, tables: list[Table], arrays: dict | None = None,
                 force: bool = False, progress: bool = False) -> Path:
    """index.html, one CSV per table and each array as .npy ({file name: array}), written into out by
    analysis.report.writer's rules (its own files only). progress: a bar on stderr, once writing has taken a
    second."""
    from tqdm.auto import tqdm

    files = {f"{t.name}.csv": t.to_csv for t in tables}
    files.update({name: _npy(arr) for name, arr in (arrays or {}).items()})
    files["index.html"] = lambda path: path.write_text(page_html(title, subtitle, tables), encoding="utf-8")
    with tqdm(total=len(files), desc="writing", unit="file", disable=not progress, leave=False, delay=1) as bar:
        def counted(write):
            def run(path):
                write(path)
                bar.update()
            return run
        return write_folder(out, {name: counted(write) for name, write in files.items()}, force=force)
