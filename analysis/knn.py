"""Exact top-k search: blocked matmul, then a two-stage partial selection.

For a chunk of queries the scores S [n, V] come from one BLAS matmul. Selecting the top k
of each row of S is what a naive argpartition spends most of its time on, so we select in two
stages: the maximum of each of V/G groups of G columns (one fast pass over S), then the top
k+1 groups by that maximum, then the exact top k among those groups' members only. Group g holds
the strided columns g, g + V/G, g + 2V/G, ...: its maximum is then an elementwise maximum of G
contiguous slices, which numpy vectorises (a max over G adjacent columns is 16x slower). Every top-k
element lies in a group whose maximum is at least the k-th score, and at most k groups can have
such a maximum, so the result is exact. A tie at the boundary (k+1 groups reaching the k-th score)
is detected and that row is redone with a full stable sort. Ties always resolve to the lower index.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minigpt2.errors import InputError

GROUP = 16
CHUNK_BYTES = 256 << 20  # scores per chunk: 256 MiB (~1300 rows of GPT-2's vocabulary), so peak memory
                         # stays bounded for any n; smaller chunks slow BLAS down (280 vs 340 GFLOP/s)
_POOL = ThreadPoolExecutor(2)  # selection runs on two threads (numpy releases the GIL in these kernels)


METRICS = ("cosine", "dot")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InputError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    return metric


class VocabIndex:
    """Keys [V, D] prepared once (normalised for cosine), searched many times."""

    def __init__(self, keys: np.ndarray, metric: str = "cosine", ids: np.ndarray | None = None):
        check_metric(metric)
        keys = np.asarray(keys, dtype=np.float32)
        if keys.ndim != 2 or keys.shape[0] == 0:
            raise ValueError(f"keys must be a non-empty [V, D] matrix, got shape {keys.shape}")
        if not np.isfinite(keys).all():
            raise ValueError("keys contain NaN or Inf")
        if metric == "cosine":
            keys = _unit_rows(keys)                                        # a zero key scores 0
        self.keys = np.ascontiguousarray(keys)                         # [V, D]
        self.metric = metric
        self.ids = None if ids is None else np.asarray(ids, dtype=np.int64)  # map rows back to vocabulary ids

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(indices [n, k], scores [n, k]), scores descending. Indices are vocabulary ids when ids was given."""
        idx, sc = _search(self.keys, _prep_queries(queries, self.keys.shape[1], self.metric), k)
        return self._map(idx), sc

    def search_both(self, queries: np.ndarray, k: int = 10):
        """Top k and bottom k from one matmul: (top_idx, top_scores, bottom_idx, bottom_scores).

        Bottom scores ascend (most negative first): the top k of the negated query.
        """
        q = _prep_queries(queries, self.keys.shape[1], self.metric)
        ti, ts, bi, bs = _search(self.keys, q, k, also_bottom=True)
        return self._map(ti), ts, self._map(bi), bs

    def _map(self, idx: np.ndarray) -> np.ndarray:
        return idx if self.ids is None else self.ids[idx]


class AffineIndex:
    """Keys s_v = gamma * (a_v base_v + c_v) + beta for one shared normalised base, searched without
    ever building them. base_aug [V, D+1] is the base with the column c_v / a_v appended.

    q . s_v = a_v ((q gamma) . base_v + (q . gamma) c_v / a_v) + q . beta: one matmul of [q gamma, q . gamma]
    against base_aug, then a per-key scale. For cosine, |s_v|^2 expands into matvecs over base and base^2.
    LN1_l / LN2_l spaces: a = 1, c = 0. The unembedding lnf_w * W_E: a = std, c = mean of each W_E row, beta = 0.
    """

    def __init__(self, base_aug: np.ndarray, base_sq: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                 metric: str = "cosine", ids: np.ndarray | None = None, scale: np.ndarray | None = None):
        check_metric(metric)
        D = base_sq.shape[1]
        self.shifted = scale is not None
        if self.shifted and np.any(beta):
            raise ValueError("a per-key scale needs beta = 0")
        self.base = base_aug if self.shifted else base_aug[:, :D]                    # [V, D+1] or [V, D] view
        self.gamma, self.beta, self.metric, self.ids = gamma.astype(np.float32), beta.astype(np.float32), metric, ids
        f = np.float32
        a = scale.astype(f) if self.shifted else None
        self.col_scale = a
        if metric == "cosine":
            g, b, n = self.gamma, self.beta, base_aug[:, :D]
            n2 = base_sq @ (g * g) + f(2) * (n @ (g * b)) + b @ b                      # [V] (a = 1, c = 0)
            if self.shifted:                                                            # a^2 n^2.g^2 + 2 a c n.g^2 + c^2 |g|^2
                c = base_aug[:, D] * a
                n2 = a * a * (base_sq @ (g * g)) + f(2) * a * c * (n @ (g * g)) + c * c * (g @ g)
            norm = np.sqrt(np.maximum(n2, f(0)))
            inv = np.where(norm > 0, f(1) / np.where(norm > 0, norm, f(1)), f(0))
            self.col_scale = inv * a if self.shifted else inv

    def project(self, W: np.ndarray) -> np.ndarray:
        """The keys seen through W [D, n]: s_v @ W for every key, [V, n], times 1/|s_v| for cosine.

        A query q . (s_v @ W) scores like (q W^T) . s_v would here: the low-rank head search's vocabulary.
        """
        W = W.astype(np.float32)
        gW = self.gamma[:, None] * W                                                  # [D, n]
        if self.shifted:                                                              # base [V, D+1]
            P = self.base @ np.vstack([gW, (self.gamma @ W)[None]])
        else:
            P = self.base @ gW
            P += self.beta @ W
        if self.col_scale is not None:                                                # a_v, or a_v / |s_v|
            P *= self.col_scale[:, None]
        return P

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(indices [n, k], scores [n, k]), as VocabIndex.search."""
        idx, sc = self._run(queries, k, also_bottom=False)
        return self._map(idx), sc

    def search_both(self, queries: np.ndarray, k: int = 10):
        """Top k and bottom k from one matmul, as VocabIndex.search_both."""
        ti, ts, bi, bs = self._run(queries, k, also_bottom=True)
        return self._map(ti), ts, self._map(bi), bs

    def _run(self, queries, k, also_bottom):
        q = _prep_queries(queries, self.gamma.shape[0], self.metric)
        qg = q * self.gamma
        if self.shifted:
            qg = np.concatenate([qg, (q @ self.gamma)[:, None]], axis=1)                # [n, D+1]
        off = None if self.shifted else q @ self.beta
        return _search(self.base, qg, k, also_bottom, row_offset=off, col_scale=self.col_scale)

    def _map(self, idx: np.ndarray) -> np.ndarray:
        return idx if self.ids is None else self.ids[idx]


def topk(queries: np.ndarray, keys: np.ndarray, k: int = 10, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of queries [n, D] against keys [V, D]: (indices [n, k], scores [n, k]).

    Scores descend; ties go to the lower index. metric "cosine" or "dot".
    """
    return VocabIndex(keys, metric).search(queries, k)


def _prep_queries(queries, d: int, metric: str) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None]
    if q.ndim != 2 or q.shape[1] != d:
        raise ValueError(f"queries must be [n, {d}], got shape {np.shape(queries)}")
    if not np.isfinite(q).all():
        raise ValueError("queries contain NaN or Inf")
    if metric == "cosine":
        q = _unit_rows(q)
    return q


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32.

    Squares sum in float32; rows whose sum is tiny (denormal range) or overflows are redone in float64.
    """
    n2 = np.einsum("ij,ij->i", x, x)                                     # [n]
    bad = ~((n2 > np.float32(1e-30)) & np.isfinite(n2))
    inv = np.zeros_like(n2)                                              # bad rows: redone below
    inv[~bad] = np.float32(1) / np.sqrt(n2[~bad])
    if bad.any():
        n64 = np.sqrt(np.einsum("ij,ij->i", x[bad], x[bad], dtype=np.float64))
        scaled = x[bad] / np.where(n64 > 0, n64, 1.0)[:, None]
    out = x * inv[:, None]                                               # a new array: never the caller's
    if bad.any():
        out[bad] = scaled
    return out


def _search(keys, q, k, also_bottom=False, row_offset=None, col_scale=None):
    """Top k of S = (q @ keys^T + row_offset[:, None]) * col_scale[None, :], chunk by chunk."""
    n, V = q.shape[0], keys.shape[0]
    if not 1 <= k <= V:
        raise ValueError(f"k must be in 1..{V}, got {k}")
    out_i = np.empty((n, k), np.int64)
    out_s = np.empty((n, k), np.float32)
    if also_bottom:
        bot_i, bot_s = np.empty((n, k), np.int64), np.empty((n, k), np.float32)
    rows = max(1, min(n, CHUNK_BYTES // (4 * V)))
    buf = np.empty((rows, V), np.float32)
    for a in range(0, n, rows):
        b = min(n, a + rows)
        S = np.matmul(q[a:b], keys.T, out=buf[: b - a])                # [r, D] @ [D, V] -> [r, V]
        if row_offset is not None:
            S += row_offset[a:b, None]
        if col_scale is not None:
            S *= col_scale
        out_i[a:b], out_s[a:b] = _select_parallel(S, k)
        if also_bottom:
            np.negative(S, out=S)
            bot_i[a:b], s = _select_parallel(S, k)
            bot_s[a:b] = -s
    return (out_i, out_s, bot_i, bot_s) if also_bottom else (out_i, out_s)


def _select_parallel(S: np.ndarray, k: int):
    if S.shape[0] < 64:
        return select_topk(S, k)
    h = S.shape[0] // 2
    top, bottom = _POOL.submit(select_topk, S[:h], k), _POOL.submit(select_topk, S[h:], k)
    (i1, v1), (i2, v2) = top.result(), bottom.result()
    return np.concatenate([i1, i2]), np.concatenate([v1, v2])


def select_topk(S: np.ndarray, k: int, group: int = GROUP) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row of S [r, V]: (indices [r, k], values [r, k]), descending, ties to lower index."""
    r, V = S.shape
    n_groups = V // group
    if n_groups <= k + 1:                                              # small V: plain sort is cheapest
        return _sorted_topk(S, np.broadcast_to(np.arange(V), S.shape), k)
    main = n_groups * group
    gmax = _group_max(S, group, n_groups)                              # [r, V/G]; group g = columns g + i V/G
    top_groups = np.argpartition(gmax, n_groups - (k + 1), axis=1)[:, n_groups - (k + 1):]  # [r, k+1]
    cols = (top_groups[:, :, None] + np.arange(group) * n_groups).reshape(r, -1)           # [r, (k+1) G]
    if main < V:                                                       # the tail that fills no whole group
        cols = np.concatenate([cols, np.broadcast_to(np.arange(main, V), (r, V - main))], axis=1)
    vals = np.take_along_axis(S, cols, axis=1)
    idx, top = _sorted_topk(vals, cols, k)
    # Exact unless k+1 groups reach the k-th value (a tie at the boundary): redo those rows in full.
    weakest = np.take_along_axis(gmax, top_groups, axis=1).min(axis=1)  # [r]
    for i in np.flatnonzero(weakest >= top[:, -1]):
        idx[i], top[i] = _sorted_topk(S[i:i + 1], np.arange(V)[None], k)
    return idx, top


def _group_max(S: np.ndarray, group: int, n_groups: int) -> np.ndarray:
    """Elementwise maximum of the G column blocks S[:, i n : (i+1) n], with no copy of S."""
    head = S[:, : group * n_groups]
    if head.flags.c_contiguous:
        return head.reshape(S.shape[0], group, n_groups).max(axis=1)
    g = S[:, :n_groups].copy()                    # reshaping a strided view would copy all of S
    for i in range(1, group):
        np.maximum(g, S[:, i * n_groups:(i + 1) * n_groups], out=g)
    return g


def _sorted_topk(vals: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of each row by (value desc, column asc)."""
    order = np.lexsort((cols, -vals), axis=-1)[:, :k]
    return np.take_along_axis(cols, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)
