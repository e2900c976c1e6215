"""Every failure minigpt2 expects derives from Error: the command line prints it as one line and exits 1.

Anything else that escapes is a bug, and keeps its traceback.
"""
from __future__ import annotations


class Error(Exception):
    """An expected failure: bad input, a bad file, an unreachable hub. The message says what to do."""


class ConfigError(Error, ValueError):
    """config.json is missing, malformed, or not a GPT-2 this code runs."""


class WeightsError(Error, ValueError):
    """The checkpoint file is unreadable, or a tensor is missing, misshapen, duplicated or not finite."""


class TokenizerError(Error, ValueError):
    """No usable tokenizer files, or text that cannot be encoded."""


class InputError(Error, ValueError):
    """Token ids, text or options that the model or the analysis cannot take."""


class LoadError(Error, RuntimeError):
    """The model could not be found, downloaded or read."""


class NumericError(Error, FloatingPointError):
    """The forward pass left float32's range (weights too large): its output would be NaN or Inf."""


class OutputError(Error, OSError):
    """The report cannot be written where asked without touching files it did not write."""


def check_text(text: str, what: str = "the prompt") -> str:
    """text as a str that encodes to UTF-8; InputError naming the first bad character otherwise.

    Bytes that are not UTF-8 in a command-line argument reach Python as lone surrogates (U+DC80..U+DCFF,
    PEP 383), so they are reported as the byte they stand for.
    """
    if not isinstance(text, str):
        raise InputError(f"{what} must be text (str), got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        ch = text[e.start]
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            raise InputError(f"{what} is not valid UTF-8: byte 0x{ord(ch) - 0xDC00:02x} at character {e.start}; "
                             "pass UTF-8 text") from None
        raise InputError(f"{what} holds an unpaired surrogate U+{ord(ch):04X} at character {e.start}, "
                         "which is not text; pass a valid str") from None
    return text


class IndexOutOfRange(InputError, IndexError):
    """A layer, head, neuron or position outside the model or the prompt (also an IndexError)."""


def check_index(i, n: int, what: str) -> int:
    """i as an int in 0..n-1, or IndexOutOfRange naming what: the one index check of the package (a bool, a
    float such as 1.0 and a numpy float are refused: an index is a whole number, given as one)."""
    import numbers
    if isinstance(i, bool) or not isinstance(i, numbers.Integral):
        raise IndexOutOfRange(f"{what} must be an integer in 0..{n - 1}, got {i!r}")
    if not 0 <= i < n:
        raise IndexOutOfRange(f"{what} {int(i)} is outside 0..{n - 1}")
    return int(i)
