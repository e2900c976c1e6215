"""Exact top-k with deterministic ties, and Partial: one shard's (or several merged shards') results.

Every candidate has a key (int64) that orders examples: for a neuron the token's global index, for a head
dest * n_ctx + source position, so a smaller key is the earlier document, then the earlier token. Within a
row, candidates are kept in ascending key order; a merge only ever joins a range of windows with the range
right after it, so the concatenation stays in key order. select() then keeps the k largest values, a tie
at the k-th value going to the smallest keys: the result depends on the values and keys alone, never on
how the windows were grouped into shards or how the shards were merged.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


def top_columns(vals: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the top k of each row of vals [N, C] (C > k), a tie at the k-th value going to the
    earliest columns: k per row, row by row, each row's columns ascending."""
    N, C = vals.shape
    t = np.partition(vals, C - k, axis=1)[:, C - k]                # [N] the k-th largest value
    gt = vals > t[:, None]
    eq = vals == t[:, None]
    need = k - gt.sum(axis=1)                                      # how many of the ties at t to keep
    take = gt | eq
    over = np.flatnonzero(eq.sum(axis=1) > need)                   # rows with more ties than room: the first
    if over.size:                                                  #   ones (smallest keys) win
        e = eq[over]
        take[over] = gt[over] | (e & (np.cumsum(e, axis=1) <= need[over, None]))
    return np.nonzero(take)                                        # row-major: k per row, in column order


def select(vals: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """vals [N, C], keys [N, C] (ascending along C) -> the top min(k, C) of each row, still in key order."""
    N, C = vals.shape
    if C <= k:
        return vals, keys
    r, c = top_columns(vals, k)
    return vals[r, c].reshape(N, k), keys[r, c].reshape(N, k)


def fold(vals: np.ndarray, keys: np.ndarray, new_vals: np.ndarray, new_keys: np.ndarray, k: int):
    """The running top-k (vals, keys [N, a]) and new candidates (new_vals [N, b], new_keys [b], the same for
    every row, all above keys) -> the top-k of both, in key order (no [N, b] array of keys is made)."""
    N, a = vals.shape
    both = np.concatenate([vals, new_vals], axis=1)
    if a + new_keys.size <= k:
        return both, np.concatenate([keys, np.broadcast_to(new_keys, (N, new_keys.size))], axis=1)
    r, c = top_columns(both, k)
    old = c < a
    picked = np.where(old, keys[r, np.minimum(c, max(a - 1, 0))] if a else 0, new_keys[np.maximum(c - a, 0)])
    return both[r, c].reshape(N, k), picked.reshape(N, k)


def ranked(vals: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row ordered by value descending, then key ascending: the ranks 1..k."""
    order = np.lexsort((keys, -vals), axis=-1)
    return np.take_along_axis(vals, order, -1), np.take_along_axis(keys, order, -1)


@dataclass
class Partial:
    """What a range of windows gives. N = L m neurons (row l m + n), Hs = L H heads (row l H + h)."""
    n_vals: np.ndarray     # [N, k'] float32   top activations, in key order
    n_keys: np.ndarray     # [N, k'] int64     their tokens' global indices
    n_sum: np.ndarray      # [N] float64       sum of activations
    n_pos: np.ndarray      # [N] int64         tokens with activation > 0
    n_max: np.ndarray      # [N] float32
    h_vals: np.ndarray     # [Hs, k'] float32  top attention weights to a source other than position 0
    h_keys: np.ndarray     # [Hs, k'] int64    dest global index * n_ctx + source position in the window
    h_sum0: np.ndarray     # [Hs] float64      sum of attention on position 0 over the queries after it
    tokens: int            # ranked tokens (every document token once: positions 1.. of its window)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, a) -> "Partial":
        return cls(**{f.name: (int(a[f.name]) if f.name == "tokens" else np.asarray(a[f.name]))
                      for f in fields(cls)})


def merge(a: Partial, b: Partial, k: int) -> Partial:
    """a's windows followed by b's (every key of a below every key of b)."""
    cat = lambda x, y: np.concatenate([x, y], axis=1)  # noqa: E731
    nv, nk = select(cat(a.n_vals, b.n_vals), cat(a.n_keys, b.n_keys), k)
    hv, hk = select(cat(a.h_vals, b.h_vals), cat(a.h_keys, b.h_keys), k)
    return Partial(nv, nk, a.n_sum + b.n_sum, a.n_pos + b.n_pos, np.maximum(a.n_max, b.n_max),
                   hv, hk, a.h_sum0 + b.h_sum0, a.tokens + b.tokens)


def tree_merge(parts, k: int) -> Partial:
    """Merge partials given in window order as a balanced binary tree whose shape depends only on their
    number (a binary counter: O(log n) of them held at once), so the float64 sums are the same bits on any
    cluster. parts may be a generator (each shard loaded from disk as it is needed)."""
    stack: list[tuple[int, Partial]] = []                   # (size, partial), sizes decreasing
    for p in parts:
        size = 1
        while stack and stack[-1][0] == size:
            left = stack.pop()[1]
            p, size = merge(left, p, k), size * 2
        stack.append((size, p))
    if not stack:
        raise ValueError("nothing to merge")
    p = stack.pop()[1]
    while stack:
        p = merge(stack.pop()[1], p, k)
    return p
