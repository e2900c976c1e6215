"""The page's data for its script, as one inline JSON block: the prompt's tokens, the model's sizes and the
neuron cards (every neuron's words as 2-byte indices into one word list, its high-bias flags as bits, and
this prompt's activations in 8 bits, log-spaced), base64-encoded so that the 36,864 neurons of GPT-2 small
fit in about 2 MB."""
from __future__ import annotations

import base64
import json

import numpy as np


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


ACT_UNIT = 0.01                          # activations are stored as round(asinh(a / ACT_UNIT) / ACT_STEP), int8:
ACT_STEP = float(np.arcsinh(1000 / ACT_UNIT) / 127)   # |a| up to 1000, within 5% (a heat map's precision)


def quantize_acts(acts: np.ndarray) -> np.ndarray:
    """[...] float activations -> int8 codes (0 only for |a| < 0.0005, exact zeros included)."""
    return np.clip(np.rint(np.arcsinh(acts.astype(np.float64) / ACT_UNIT) / ACT_STEP), -127, 127).astype(np.int8)


def dequantize_acts(codes: np.ndarray) -> np.ndarray:
    """What the page's script shows for each code (the same formula, in JavaScript)."""
    return ACT_UNIT * np.sinh(codes.astype(np.float64) * ACT_STEP)


def _spaced(word: str) -> str:
    """A shown word's leading ·s as spaces (1 byte each, not 2); the script shows them as · again."""
    rest = word.lstrip("·")
    return " " * (len(word) - len(rest)) + rest


def cards_json(cards) -> dict | None:
    """The neuron cards (analysis.views.cards.NeuronCards, or anything with its fields) for the script."""
    if cards is None:
        return None
    L, m, n_lists, k = cards.ids.shape
    acts = None if cards.acts is None else _b64(quantize_acts(cards.acts))          # [L, T, m] int8 codes
    return {"L": L, "m": m, "k": k, "T": None if cards.acts is None else int(cards.acts.shape[1]),
            "unit": ACT_UNIT, "step": ACT_STEP,
            "lists": ["input words", "output words", "negative output words"][:n_lists],
            "words": "\n".join(map(_spaced, cards.words)),      # shown words hold no newline (it shows as ⏎)
            "ids": _b64(cards.ids.astype("<u2")), "high": _b64(np.packbits(cards.high_bias.reshape(-1), bitorder="little")),
            "acts": acts}


def data_block(uid: str, tokens: list[str], n_layers: int, n_heads: int, cards=None) -> str:
    """<script type="application/json" data-mg2>: what the page's script reads. Every '<' is escaped, so no
    word (a token may be '</script>') can end the block early."""
    data = {"uid": uid, "tokens": tokens, "L": n_layers, "H": n_heads, "cards": cards_json(cards)}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" data-mg2>{text}</script>'
