"""The command line's argument types and text checks (shared by commands and experiments)."""
from __future__ import annotations

import argparse
import math

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


_CONTROL = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def _show(text: str) -> str:
    """A token or prefix on one terminal line: newlines, returns and tabs written as escapes."""
    return text.translate(_CONTROL)


def _finite(text: str) -> float:
    x = _number(text)
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return x


def _prompt(text: str) -> str:
    check_text(text)
    if not text.strip():
        raise InputError("empty prompt: give some text")
    return text
