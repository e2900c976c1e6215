"""Matches: the top-k vocabulary words of many vectors, kept in the vectors' own shape, with the
"(high bias)" judgement; and each vector's words with their scores (Scored, below), as plain data."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter

import numpy as np

from .spaces import Vocab

HIGH_BIAS = "(high bias)"
DEFAULT_BIAS_THRESHOLD = 2.0


# Scored: one vector's k nearest words as plain data, the tuple (words, scores, bias_z, high_bias):
#   words      tuple[str, ...]    best first, as Vocab.shown writes them (·word: a leading space)
#   scores     tuple[float, ...]  their similarity (cosine or dot)
#   bias_z     float              the words' mean standardised token bias
#   high_bias  bool               |bias_z| > threshold: the vector's cell shows "(high bias)" instead of the words
# A report holds ~10^5 of them (every neuron, three times). An exact tuple of plain values, not a NamedTuple:
# the garbage collector stops tracking an exact tuple, while a NamedTuple stays tracked and every full
# collection walks them all again. Tuples, not array rows, so that rows compare and hash as values.


@contextmanager
def collector_paused():
    """For making ~10^5 small objects that all stay alive: the cyclic garbage collector would otherwise run
    hundreds of times meanwhile, each time over the growing heap (its time in a GPT-2 8-token analyze():
    0.55 s with, 0.31 s without; 0.25 s before the Scored columns). Exact tuples of plain values are
    untracked at its next run."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Matches:
    """For vectors of shape S (e.g. [L, H, T] head vectors, [L, m] neurons):"""
    ids: np.ndarray        # [*S, k] vocabulary ids, best first
    scores: np.ndarray     # [*S, k] similarity (cosine or dot)
    bias_z: np.ndarray     # [*S] mean standardised token bias of the k matches
    high_bias: np.ndarray  # [*S] |bias_z| > threshold: show "(high bias)" instead of the words
    cells: np.ndarray      # [*S] object: what the essay shows, the words joined, or "(high bias)"
    words: np.ndarray      # [*S] object: the k words of each vector (a tuple, as Vocab.shown writes them)

    @classmethod
    def make(cls, ids, scores, vocab: Vocab, threshold: float, shape: tuple[int, ...] | None = None) -> "Matches":
        """From flat [n, k] results; shape (default (n,)) gives them the vectors' own axes."""
        k = ids.shape[-1]
        shape = tuple(shape) if shape is not None else ids.shape[:-1]
        ids, scores = ids.reshape(*shape, k), scores.reshape(*shape, k)
        z = vocab.bias_z[ids].mean(axis=-1)
        high = np.abs(z) > threshold
        shown = vocab.shown
        with collector_paused():
            words = [itemgetter(*row)(shown) if k > 1 else (shown[row[0]],) for row in ids.reshape(-1, k).tolist()]
            words = np.fromiter(words, object, len(words))                      # fromiter: tuples stay whole
        flat = [HIGH_BIAS if hb else ", ".join(w) for w, hb in zip(words.tolist(), high.reshape(-1).tolist())]
        cells = np.empty(len(flat), object)
        cells[:] = flat
        return cls(ids=ids, scores=scores, bias_z=z, high_bias=high, cells=cells.reshape(shape),
                   words=words.reshape(shape))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.cells.shape

    def cell(self, *index: int) -> str:
        return self.cells[index]

    @cached_property
    def scored(self) -> np.ndarray:
        """[*S] object: each vector's Scored tuple (words, scores, bias_z, high_bias), made once, in bulk."""
        k = self.scores.shape[-1]
        with collector_paused():
            scores = zip(*[iter(self.scores.reshape(-1).tolist())] * k)        # k-tuples of floats, in C
            each = zip(self.words.reshape(-1).tolist(), scores, self.bias_z.reshape(-1).tolist(),
                       self.high_bias.reshape(-1).tolist())
            return np.fromiter(each, object, self.cells.size).reshape(self.shape)
