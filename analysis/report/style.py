"""The page's CSS, scoped under .mg2r (a notebook may hold several reports), and the per-tab rules that make
the tabs work without script: a radio button per tab, its label in the tools bar, its panel below."""
from __future__ import annotations

from .cells import heat_colour

BAR = 92          # px: the sticky tools bar (jump, filter, tabs) at 1400 px wide; scroll boxes fit below it

CSS = """
.mg2r{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222}
.mg2r header{padding:10px 20px;background:#1f3b57;color:#fff}.mg2r header h1{margin:0;font-size:19px;color:#fff}
.mg2r header p{margin:3px 0 0;font-size:12px;opacity:.9}
.mg2r .random{background:#b3261e;color:#fff;font-weight:600;padding:6px 20px;font-size:14px}
.mg2r .legend{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-top:5px;font-size:12px}
.mg2r .legend span.sw{display:inline-block;width:22px;height:12px;border:1px solid #999;vertical-align:middle}
.mg2r>input{position:absolute;opacity:0;pointer-events:none}
.mg2r .bar{position:sticky;top:0;z-index:20;background:#e8edf2;border-bottom:1px solid #c9d3dd}
.mg2r .tools{display:flex;gap:12px;align-items:center;padding:5px 16px;background:#f4f6f8;font-size:13px}
.mg2r .tools input{font-size:13px;padding:2px 6px;width:210px}.mg2r .tools output{color:#555}
.mg2r .tools output.on{color:#8a5a00;font-weight:600}
.mg2r .tabs{display:flex;flex-wrap:wrap;padding:0 10px}
.mg2r .tabs>label{padding:6px 10px;cursor:pointer;font-size:13px;border-bottom:3px solid transparent}
.mg2r .tabs>label:focus{outline:2px solid #1f3b57}
.mg2r .tabs>label.js{display:none}.mg2r.js .tabs>label.js{display:inline}
.mg2r .panel{display:none;padding:8px 8px;background:#fff}
.mg2r h2{font-size:16px;margin:2px 0}.mg2r h3{font-size:14px;margin:8px 0 2px}
.mg2r .note{font-size:13px;color:#555;max-width:1100px;margin:4px 0}
.mg2r .scroll{overflow:auto;max-height:calc(100vh - %(bar)spx);border:1px solid #d8dde3}
.mg2r table{border-collapse:separate;border-spacing:0;font-size:12px}
.mg2r th,.mg2r td{border-right:1px solid #d8dde3;border-bottom:1px solid #d8dde3;padding:3px 6px;
  vertical-align:top;text-align:left;background-clip:padding-box}
.mg2r thead th{background:#f0f3f6;position:sticky;top:0;z-index:2;white-space:pre}
.mg2r thead th.sort{cursor:pointer}.mg2r thead th[aria-sort=ascending]::after{content:" ▲"}
.mg2r thead th[aria-sort=descending]::after{content:" ▼"}
.mg2r th[data-pos],.mg2r td.tok{cursor:pointer}.mg2r th[data-pos]:hover,.mg2r td.tok:hover{text-decoration:underline}
.mg2r .s0,.mg2r .s1,.mg2r .s2,.mg2r .s0w{position:sticky;z-index:1;background:#f7f9fb}
.mg2r .s0,.mg2r .s1,.mg2r .s2{width:58px;min-width:58px;max-width:58px;box-sizing:border-box}
.mg2r .s0,.mg2r .s0w{left:0}.mg2r .s1{left:58px}.mg2r .s2{left:116px}
.mg2r thead th.s0,.mg2r thead th.s1,.mg2r thead th.s2,.mg2r thead th.s0w{z-index:3;background:#e6eaee}
.mg2r td.num{text-align:right;font-variant-numeric:tabular-nums}
.mg2r td{white-space:pre-wrap;max-width:420px}.mg2r td.hb{color:#999;font-style:italic}
.mg2r td.ok{background:#d3f0de}.mg2r td.bad{background:#f6d5d1}
.mg2r tr.sep>td,.mg2r tr.sep>th{border-top:3px solid #1f3b57}
.mg2r tr.hit>td,.mg2r td.hit,.mg2r th.hit{outline:2px solid #e0a000;outline-offset:-2px}
.mg2r .more{font-size:12px;color:#555}.mg2r [hidden]{display:none !important}
.mg2r .blocks{display:flex;flex-wrap:wrap;gap:10px}.mg2r figure.blk{margin:0}
.mg2r figcaption{font-size:12px;font-weight:600}.mg2r table.grid td{width:9px;height:9px;padding:0}
.mg2r table.grid th.q{font-weight:400;font-size:10px;padding:0 3px;max-width:80px;overflow:hidden}
.mg2r figure.head{margin:0 0 14px}.mg2r figure.head figcaption{font-weight:400;font-size:13px;margin:2px 0 4px}
.mg2r table.hv td,.mg2r table.hv th{padding:2px 4px}
.mg2r .corpus{font-size:12px;margin:6px 0 0;max-width:1100px}.mg2r .corpus p{margin:0 0 2px}.mg2r .corpus ol{margin:0;padding-left:22px}
.mg2r table.hv td.tok{position:sticky;left:0;z-index:1;background:#f7f9fb}
.mg2r table.hv .s0,.mg2r table.hv td.tok{width:auto;min-width:92px;max-width:130px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.mg2r table.hv .pw{width:236px;min-width:236px;max-width:236px;white-space:normal}
.mg2r table.hv th[data-pos]{width:32px;min-width:32px;max-width:32px;height:104px;vertical-align:bottom;padding:2px 0}
.mg2r table.hv th[data-pos] span{writing-mode:vertical-rl;transform:rotate(180deg);display:inline-block;max-height:100px;
  overflow:hidden;white-space:nowrap;font-weight:400;margin:0 auto}
.mg2r table.hv th.sm{width:52px;white-space:normal;vertical-align:bottom;font-weight:400}
.mg2r table.hv td[class^=h]{font-size:11px;padding:2px 3px;text-align:right;font-variant-numeric:tabular-nums}
.mg2r .card table td{max-width:900px}.mg2r .card th{text-align:left;background:#f0f3f6;white-space:nowrap}
.mg2r .chooser{margin:4px 0;font-size:13px}.mg2r .panel figure,.mg2r .panel tr,.mg2r .panel .chooser{scroll-margin-top:110px}.mg2r .hint{color:#666;font-size:12px}
""".replace("%(bar)s", str(BAR)) + "".join(
    f".mg2r td.h{i}{{{heat_colour(i / 10)}}}\n" for i in range(11))


def tab_css(ids: list[str]) -> str:
    """Each tab's rules: its panel shows, and its label is marked, while its radio button is checked."""
    return "".join(f".mg2r>#{i}:checked~.bar label[for={i}]{{border-bottom-color:#1f3b57;font-weight:600;"
                   f"background:#fff}}.mg2r>#{i}:checked~.panels>#p-{i}{{display:block}}\n" for i in ids)
