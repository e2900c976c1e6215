"""Figures as inline SVG, for the pages of the patch and tune-bos commands: a diverging heat map (the
causal-tracing figure) and a line chart (a loss curve), and the one-page HTML that holds them. No script,
no external file: the page reads from file:// and with JavaScript off."""
from __future__ import annotations

import math

from .html import esc
from .page import CSS

CELL, LABEL_W, LABEL_H, PAD = 34, 150, 92, 8


def _diverging(v: float, top: float) -> str:
    """White at 0, blue for negative, red for positive, full at |v| = top."""
    if v is None or not math.isfinite(v) or top <= 0:
        return "#eeeeee"
    a = min(1.0, abs(v) / top)
    fade = round(255 * (1 - a))
    return f"rgb(255,{fade},{fade})" if v > 0 else f"rgb({fade},{fade},255)"


def heatmap_svg(values: list[list[float]], rows: list[str], cols: list[str], caption: str,
                top: float | None = None) -> str:
    """values [R][C] as squares, rows labelled on the left, columns on top (rotated), a colour scale that
    is symmetric around 0, full at top (default: the largest |value|); every square's title is its number."""
    if top is None:
        top = max((abs(v) for r in values for v in r if v is not None and math.isfinite(v)), default=0.0)
    W, H = max(LABEL_W + CELL * len(cols) + PAD, 360), LABEL_H + CELL * len(rows) + 58
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
           f'aria-label="{esc(caption)}" font-family="sans-serif" font-size="12">',
           f'<text x="0" y="14" font-weight="bold">{esc(caption)}</text>']
    for j, c in enumerate(cols):
        x = LABEL_W + CELL * j + CELL / 2
        out.append(f'<text transform="translate({x:.0f},{LABEL_H - 6}) rotate(-60)">{esc(c)}</text>')
    for i, (name, r) in enumerate(zip(rows, values)):
        y = LABEL_H + CELL * i
        out.append(f'<text x="{LABEL_W - 6}" y="{y + CELL / 2 + 4:.0f}" text-anchor="end">{esc(name)}</text>')
        for j, v in enumerate(r):
            shown = "" if v is None else f"{v:+.3f}"
            out.append(f'<rect x="{LABEL_W + CELL * j}" y="{y}" width="{CELL - 1}" height="{CELL - 1}" '
                       f'fill="{_diverging(v, top)}"><title>{esc(name)}, {esc(cols[j])}: {shown}</title></rect>')
    y = LABEL_H + CELL * len(rows) + 20
    out.append(f'<text x="0" y="{y}">colour: blue {-top:+.3f}, white 0, red {top:+.3f}</text>')
    out.append(f'<text x="0" y="{y + 18}">(hover a square for its value)</text>')
    out.append("</svg>")
    return "".join(out)


def line_svg(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str) -> str:
    """Lines of (x, y) points, one per named series (NaN points skipped), on shared axes with their ranges."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(y)]
    if not pts:
        return "<p>(no finite values to plot)</p>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    W, H, L, B = 640, 320, 60, 40

    def at(x, y):
        return L + (x - x0) / (x1 - x0) * (W - L - 20), H - B - (y - y0) / (y1 - y0) * (H - B - 20)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
           f'aria-label="{esc(y_label)} by {esc(x_label)}" font-family="sans-serif" font-size="12">',
           f'<line x1="{L}" y1="{H - B}" x2="{W - 20}" y2="{H - B}" stroke="#444"/>',
           f'<line x1="{L}" y1="20" x2="{L}" y2="{H - B}" stroke="#444"/>',
           f'<text x="{W / 2:.0f}" y="{H - 8}" text-anchor="middle">{esc(x_label)}</text>',
           f'<text x="{L - 6}" y="24" text-anchor="end">{y1:.3f}</text>',
           f'<text x="{L - 6}" y="{H - B}" text-anchor="end">{y0:.3f}</text>',
           f'<text x="{L}" y="{H - B + 16}">{x0:g}</text>',
           f'<text x="{W - 20}" y="{H - B + 16}" text-anchor="end">{x1:g}</text>',
           f'<text transform="translate(14,{(H - B) / 2:.0f}) rotate(-90)" text-anchor="middle">{esc(y_label)}</text>']
    for k, (name, s) in enumerate(series.items()):
        good = [at(x, y) for x, y in s if math.isfinite(y)]
        colour = colours[k % len(colours)]
        if len(good) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in good)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        for x, y in good if len(good) < 40 else good[-1:]:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
        out.append(f'<text x="{W - 24}" y="{36 + 16 * k}" text-anchor="end" fill="{colour}">{esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def figure_page(title: str, subtitle: str, sections: list[tuple[str, str]]) -> str:
    """One self-contained page: a title, a subtitle, then (heading, HTML) sections in order."""
    body = "".join(f"<section><h2>{esc(h)}</h2>{html}</section>" for h, html in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<style>{CSS} section{{margin:1.2em 0}} svg{{max-width:100%;height:auto}}</style></head>'
            f'<body><h1>{esc(title)}</h1><p>{esc(subtitle)}</p>{body}</body></html>')
