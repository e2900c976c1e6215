"""Matches: the top-k vocabulary words of many vectors, with the "(high bias)" judgement."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spaces import Vocab

HIGH_BIAS = "(high bias)"
DEFAULT_BIAS_THRESHOLD = 2.0


@dataclass(frozen=True)
class Matches:
    ids: np.ndarray        # [n, k] vocabulary ids, best first
    scores: np.ndarray     # [n, k] similarity (cosine or dot)
    bias_z: np.ndarray     # [n] mean standardised token bias of the k matches
    high_bias: np.ndarray  # [n] |bias_z| > threshold: show "(high bias)" instead of the words
    cells: list[str]       # [n] what the essay shows: the words joined by commas, or "(high bias)"

    @classmethod
    def make(cls, ids, scores, vocab: Vocab, threshold: float) -> "Matches":
        z = vocab.bias_z[ids].mean(axis=1)
        high = np.abs(z) > threshold
        s = vocab.strings
        cells = [HIGH_BIAS if hb else join_words([s[j] for j in row]) for row, hb in zip(ids.tolist(), high.tolist())]
        return cls(ids=ids, scores=scores, bias_z=z, high_bias=high, cells=cells)

    def words(self, i: int, vocab: Vocab) -> list[str]:
        return [vocab.strings[j] for j in self.ids[i].tolist()]


def join_words(words: list[str]) -> str:
    return ",".join(words)
