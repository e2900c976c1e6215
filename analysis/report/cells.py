"""A cell's text and colour: numbers to a few digits, exact zeros as --, the heat map's colours and the tooltip
of a word cell. Shared by every drawing of the page (html.py, heads.py)."""
from __future__ import annotations

import html

import numpy as np

from ..search.spaces import show_token


def display(v, zeros_as_dashes: bool = False, digits: int = 4):
    """A cell as text: None blank, exact zeros "--" where asked, floats to `digits` significant digits."""
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        if zeros_as_dashes and v == 0.0:
            return "--"
        return f"{float(v):.{digits}g}"
    return v


def tip_text(scored: tuple) -> str:
    """The tooltip of a cell from its Scored value (analysis.search.matches): the k words' scores, and the mean
    bias z that decides "(high bias)".

    A shown cell's words are its text, so its tooltip has only their scores, in the same order (the page's
    script pairs them on hover); a "(high bias)" cell's tooltip has the hidden words with their scores and the
    signed bias z that hid them. (The CSVs have every bias z.)"""
    words, scores, bias_z, high_bias = scored
    if high_bias:
        text = ", ".join(f"{w} {x:.3f}" for w, x in zip(words, scores))
        return f"(high bias: mean bias z {bias_z:+.2f}) hidden words: {text}"
    return f"scores: {' '.join(f'{x:.3f}' for x in scores)}"


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


def heat_class(v) -> str:
    """The heat map as a class, h0..h10 (the value in tenths; the page's CSS colours each as heat_colour)."""
    return f"h{min(10, max(0, round(float(v) * 10)))}"


_LINES = {ord("\n"): "⏎", ord("\r"): "␍", ord("\t"): "⇥"}


def shown_token(v):
    """A raw token as every tab shows one: ·word for a leading space, ⏎ for a newline (never a blank)."""
    return show_token(v) if isinstance(v, str) else v


def shown_text(v):
    """Raw text (a prefix) with its line breaks visible as ⏎."""
    return v.translate(_LINES) if isinstance(v, str) else v
