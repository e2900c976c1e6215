"""Matches: the top-k vocabulary words of many vectors, kept in the vectors' own shape, with the
"(high bias)" judgement."""
from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from .spaces import Vocab

HIGH_BIAS = "(high bias)"
DEFAULT_BIAS_THRESHOLD = 2.0


@dataclass(frozen=True)
class Matches:
    """For vectors of shape S (e.g. [L, H, T] head vectors, [L, m] neurons):"""
    ids: np.ndarray        # [*S, k] vocabulary ids, best first
    scores: np.ndarray     # [*S, k] similarity (cosine or dot)
    bias_z: np.ndarray     # [*S] mean standardised token bias of the k matches
    high_bias: np.ndarray  # [*S] |bias_z| > threshold: show "(high bias)" instead of the words
    cells: np.ndarray      # [*S] object: what the essay shows, the words joined, or "(high bias)"

    @classmethod
    def make(cls, ids, scores, vocab: Vocab, threshold: float, shape: tuple[int, ...] | None = None) -> "Matches":
        """From flat [n, k] results; shape (default (n,)) gives them the vectors' own axes."""
        k = ids.shape[-1]
        shape = tuple(shape) if shape is not None else ids.shape[:-1]
        ids, scores = ids.reshape(*shape, k), scores.reshape(*shape, k)
        z = vocab.bias_z[ids].mean(axis=-1)
        high = np.abs(z) > threshold
        shown = vocab.shown
        flat = [HIGH_BIAS if hb else ", ".join(itemgetter(*row)(shown)) if k > 1 else shown[row[0]]
                for row, hb in zip(ids.reshape(-1, k).tolist(), high.reshape(-1).tolist())]
        cells = np.empty(len(flat), object)
        cells[:] = flat
        return cls(ids=ids, scores=scores, bias_z=z, high_bias=high, cells=cells.reshape(shape))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.cells.shape

    def cell(self, *index: int) -> str:
        return self.cells[index]

    def tip(self, vocab: Vocab, *index: int) -> str:
        """The tooltip of a cell: its k words with their scores, and the mean bias z that decides "(high bias)"."""
        words = ", ".join(f"{vocab.shown[j]} {s:.3f}"
                          for j, s in zip(self.ids[index].tolist(), self.scores[index].tolist()))
        z = float(self.bias_z[index])
        if self.high_bias[index]:
            return f"(high bias: mean bias z {z:+.2f}) hidden words: {words}"
        return f"{words} (mean bias z {z:+.2f})"


_SHOW = {ord("\n"): "⏎", ord("\r"): "␍", ord("\t"): "⇥"}
TOKEN_CHARS = 80   # what one token may cost on the page, in a CSV cell or a printout: GPT-2's longest is 66


def clip(s: str) -> str:
    """s, or its first TOKEN_CHARS - 1 characters and an ellipsis: a hostile tokenizer's 5,000-character
    tokens must not turn a short prompt into a report of hundreds of megabytes."""
    return s if len(s) <= TOKEN_CHARS else s[: TOKEN_CHARS - 1] + "…"


def show_token(s: str) -> str:
    """A token with its boundaries visible: leading spaces as ·, newlines as ⏎ ("·home" is the word " home",
    "home" the word piece without a space); clipped to TOKEN_CHARS."""
    stripped = s.lstrip(" ")
    return clip(("·" * (len(s) - len(stripped)) + stripped).translate(_SHOW))
