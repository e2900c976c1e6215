"""The command line's argument types and text checks (shared by commands and experiments)."""
from __future__ import annotations

import argparse
import math
import re

from minigpt2.errors import InputError, check_text


def _integer(text: str, low: int, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if n < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {n}")
    return n


def _positive(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def _nonneg(text: str) -> int:
    return _integer(text, 0, "an integer >= 0")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _threshold(text: str) -> float:
    x = _number(text)
    if not math.isfinite(x) or x < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return x


# Everything a terminal could act on: C0 controls (ESC starts colours, titles, OSC 52 clipboard writes), DEL,
# C1 controls (CSI, OSC), lone surrogates (not text: printing them fails), line separators and bidi controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: str) -> str:
    """text for one terminal line: every control character written as a Python-style escape (\\n, \\x1b,
    \\x9b, \\udcff, \\u202e), so nothing from a prompt, a token, a tokenizer file or a file name can move
    the cursor, recolour, retitle or write the clipboard. Every other character is printed as it is."""
    return _CONTROL.sub(_escape, text)


_show = printable


def _finite(text: str) -> float:
    x = _number(text)
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return x


def _prompt(text: str, what: str = "the prompt") -> str:
    check_text(text, what)
    if not text.strip():
        raise InputError(f"{what} is empty: give some text" if what != "the prompt" else "empty prompt: give some text")
    return text


RANDOM_NOTE = "minigpt2: note: RANDOM WEIGHTS (made by make-checkpoint): the words mean nothing"


def load_model(args):
    """minigpt2.load(args.model), noting in args when the checkpoint's weights are random (config.json marks
    them): main() then says so on stderr once the command has succeeded (an error stays one line)."""
    from minigpt2 import load

    model = load(args.model)
    args.random_weights = model.cfg.random_weights
    return model
