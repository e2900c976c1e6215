"""Exact top-k search: blocked matmul, then the selection of analysis.search.select.

For a chunk of queries the scores S [n, V] come from one BLAS matmul, a bounded chunk at a time; the
indexes below say how a query becomes scores over a vocabulary space without building that space.
"""
from __future__ import annotations

import numpy as np

from minigpt2.errors import InputError

from .select import select_parallel

CHUNK_BYTES = 256 << 20  # scores per chunk: 256 MiB (~1300 rows of GPT-2's vocabulary), so peak memory
                         # stays bounded for any n; smaller chunks slow BLAS down (280 vs 340 GFLOP/s)


METRICS = ("cosine", "dot")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InputError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    return metric


class _Index:
    """What every index shares: search, search_both and the map from rows back to vocabulary ids.

    A subclass says how a query becomes scores: _scores_args(q) -> (keys, q', row_offset, col_scale), with
    scores = (q' @ keys^T + row_offset[:, None]) * col_scale[None, :].
    """
    metric: str
    ids: np.ndarray | None
    dim: int
    chunk_bytes: int = CHUNK_BYTES    # scores computed at a time: bounds the memory of any search

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(indices [n, k], scores [n, k]), scores descending. Indices are vocabulary ids when ids was given."""
        top, _ = _search(*self._scores_args(_prep_queries(queries, self.dim, self.metric)), k, bottom=False,
                         chunk_bytes=self.chunk_bytes)
        return self._map(top[0]), top[1]

    def search_both(self, queries: np.ndarray, k: int = 10):
        """Top k and bottom k from one matmul: (top_idx, top_scores, bottom_idx, bottom_scores).

        Bottom scores ascend (most negative first): the top k of the negated query.
        """
        top, bottom = _search(*self._scores_args(_prep_queries(queries, self.dim, self.metric)), k, bottom=True,
                              chunk_bytes=self.chunk_bytes)
        return self._map(top[0]), top[1], self._map(bottom[0]), bottom[1]

    def _map(self, idx: np.ndarray) -> np.ndarray:
        return idx if self.ids is None else self.ids[idx]


class VocabIndex(_Index):
    """Keys [V, D] prepared once (normalised for cosine), searched many times."""

    def __init__(self, keys: np.ndarray, metric: str = "cosine", ids: np.ndarray | None = None,
                 chunk_bytes: int = CHUNK_BYTES):
        self.metric = check_metric(metric)
        self.chunk_bytes = chunk_bytes
        keys = np.asarray(keys, dtype=np.float32)
        if keys.ndim != 2 or keys.shape[0] == 0:
            raise InputError(f"keys must be a non-empty [V, D] matrix, got shape {keys.shape}")
        if not np.isfinite(keys).all():
            raise InputError("keys contain NaN or Inf; pass finite keys")
        if metric == "cosine":
            keys = _unit_rows(keys)                                        # a zero key scores 0
        self.keys = np.ascontiguousarray(keys)                         # [V, D]
        self.dim = self.keys.shape[1]
        self.ids = None if ids is None else np.asarray(ids, dtype=np.int64)  # map rows back to vocabulary ids

    def _scores_args(self, q):
        return self.keys, q, None, None


def _sq_dot(base: np.ndarray, base_sq: np.ndarray | None, w: np.ndarray) -> np.ndarray:
    """(base ** 2) @ w, w [D] or [D, n]: from base_sq when given, else squared 4096 rows at a time (no [V, D]
    temporary)."""
    if base_sq is not None:
        return base_sq @ w
    out = np.empty(base.shape[:1] + w.shape[1:], np.float32)
    for a in range(0, base.shape[0], 4096):
        blk = base[a:a + 4096]
        out[a:a + 4096] = (blk * blk) @ w
    return out


def _inv_norm(n2: np.ndarray) -> np.ndarray:
    """1 / sqrt(n2), 0 where n2 <= 0 (a zero key scores 0), float32."""
    f = np.float32
    norm = np.sqrt(np.maximum(n2, f(0)))
    return np.where(norm > 0, f(1) / np.where(norm > 0, norm, f(1)), f(0)).astype(f)


def ln_sq_norms(base: np.ndarray, base_sq: np.ndarray | None, gammas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """|gamma_i * n_v + beta_i|^2 = n_v^2 . g_i^2 + 2 n_v . (g_i b_i) + |b_i|^2 for every key v and each of
    n LayerNorms (gammas, betas [n, D]): [V, n], in one pass over the base (not one per LayerNorm)."""
    g, b = gammas.astype(np.float32), betas.astype(np.float32)
    return _sq_dot(base, base_sq, (g * g).T) + np.float32(2) * (base @ (g * b).T) + (b * b).sum(axis=1)


class LNIndex(_Index):
    """Keys s_v = gamma * n_v + beta: a LayerNorm (LN1_l, LN2_l) applied to the shared normalised base n_v
    [V, D], searched without ever building them: q . s_v = (q gamma) . n_v + q . beta.

    sq_norms: |s_v|^2 [V] when already computed (ln_sq_norms, for several LayerNorms at once); cosine only.
    """

    def __init__(self, base: np.ndarray, base_sq: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray,
                 metric: str = "cosine", ids: np.ndarray | None = None, sq_norms: np.ndarray | None = None):
        self.metric = check_metric(metric)
        self.base, self.ids, self.dim = base, ids, base.shape[1]                     # [V, D]
        self.gamma, self.beta = gamma.astype(np.float32), beta.astype(np.float32)
        self.col_scale = None
        if metric == "cosine":
            if sq_norms is None:
                sq_norms = ln_sq_norms(base, base_sq, self.gamma[None], self.beta[None])[:, 0]
            self.col_scale = _inv_norm(sq_norms)

    def project(self, W: np.ndarray) -> np.ndarray:
        """The keys seen through W [D, n]: s_v @ W for every key, [V, n], times 1/|s_v| for cosine.

        A query q . (s_v @ W) scores like (q W^T) . s_v would here: the low-rank head search's vocabulary.
        """
        W = W.astype(np.float32)
        P = self.base @ (self.gamma[:, None] * W)                                     # [V, D] @ [D, n]
        P += self.beta @ W
        if self.col_scale is not None:
            P *= self.col_scale[:, None]
        return P

    def _scores_args(self, q):
        return self.base, q * self.gamma, q @ self.beta, self.col_scale

    @staticmethod
    def search_stacked(indexes: list["LNIndex"], queries: list[np.ndarray], k: int = 10):
        """index.search(q, k) for each pair, as one matmul over the base they share (LN1 of every layer
        over the same normalised vocabulary): few queries per index no longer mean many small matmuls.
        Returns [(ids, scores)] in order."""
        first = indexes[0]
        same = lambda a, b: a.ctypes.data == b.ctypes.data and a.shape == b.shape and a.strides == b.strides  # noqa: E731
        if any(not same(ix.base, first.base) or ix.metric != first.metric for ix in indexes):
            raise ValueError("stacked indexes must share their base and metric")
        qs = [_prep_queries(q, first.dim, first.metric) for q in queries]
        starts = np.cumsum([0] + [len(q) for q in qs])
        q_all = np.concatenate([q * ix.gamma for q, ix in zip(qs, indexes)])
        off = np.concatenate([q @ ix.beta for q, ix in zip(qs, indexes)])
        scale = None if first.col_scale is None else (starts, np.stack([ix.col_scale for ix in indexes]))
        (i, sc), _ = _search(first.base, q_all, off, scale, k, bottom=False)
        return [(first._map(i[a:b]), sc[a:b]) for a, b in zip(starts[:-1], starts[1:])]


class ScaledIndex(_Index):
    """Keys s_v = gamma * (a_v n_v + c_v) for the shared normalised base n_v: the unembedding lnf_w * W_E,
    with a_v, c_v each W_E row's std and mean. base_aug [V, D+1] is the base with c_v / a_v appended, so
    q . s_v = a_v ([q gamma, q . gamma] . base_aug_v): one matmul, then a per-key scale."""

    def __init__(self, base_aug: np.ndarray, base_sq: np.ndarray | None, gamma: np.ndarray, scale: np.ndarray,
                 metric: str = "cosine", ids: np.ndarray | None = None):
        self.metric = check_metric(metric)
        self.base, self.ids = base_aug, ids                                           # [V, D+1]
        self.dim = base_aug.shape[1] - 1
        self.gamma = gamma.astype(np.float32)
        a = scale.astype(np.float32)
        if metric == "cosine":                   # |s_v|^2 = a^2 n^2.g^2 + 2 a c n.g^2 + c^2 |g|^2
            g2, n, c = self.gamma * self.gamma, base_aug[:, :-1], base_aug[:, -1] * a
            n2 = a * a * _sq_dot(n, base_sq, g2) + np.float32(2) * a * c * (n @ g2) + c * c * g2.sum()
            self.col_scale = _inv_norm(n2) * a
        else:
            self.col_scale = a

    def project(self, W: np.ndarray) -> np.ndarray:
        """As LNIndex.project, for these keys."""
        W = W.astype(np.float32)
        P = self.base @ np.vstack([self.gamma[:, None] * W, (self.gamma @ W)[None]])   # [V, D+1] @ [D+1, n]
        P *= self.col_scale[:, None]
        return P

    def _scores_args(self, q):
        return self.base, np.concatenate([q * self.gamma, (q @ self.gamma)[:, None]], axis=1), None, self.col_scale


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
        raise InputError(f"queries must be [n, {d}], got shape {np.shape(queries)}")
    if not np.isfinite(q).all():
        raise InputError("queries contain NaN or Inf; pass finite queries")
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


def _search(keys, q, row_offset, col_scale, k, bottom: bool, chunk_bytes: int = CHUNK_BYTES):
    """Top k of S = (q @ keys^T + row_offset[:, None]) * col_scale[None, :], chunk by chunk.

    Returns ((top_idx, top_scores), (bottom_idx, bottom_scores) or None), each [n, k].
    """
    n, V = q.shape[0], keys.shape[0]
    if not 1 <= k <= V:
        raise InputError(f"k must be in 1..{V}, got {k}")
    top = (np.empty((n, k), np.int64), np.empty((n, k), np.float32))
    low = (np.empty((n, k), np.int64), np.empty((n, k), np.float32)) if bottom else None
    rows = max(1, min(n, chunk_bytes // (4 * V)))
    buf = np.empty((rows, V), np.float32)
    for a in range(0, n, rows):
        b = min(n, a + rows)
        S = np.matmul(q[a:b], keys.T, out=buf[: b - a])                # [r, D] @ [D, V] -> [r, V]
        if row_offset is not None:
            S += row_offset[a:b, None]
        if isinstance(col_scale, tuple):                               # per-segment scales: (starts, [n_seg, V])
            starts, scales = col_scale
            for g, (s0, s1) in enumerate(zip(starts[:-1], starts[1:])):
                lo, hi = max(a, s0), min(b, s1)
                if lo < hi:
                    S[lo - a:hi - a] *= scales[g]
        elif col_scale is not None:
            S *= col_scale
        top[0][a:b], top[1][a:b] = select_parallel(S, k)
        if bottom:
            np.negative(S, out=S)
            low[0][a:b], s = select_parallel(S, k)
            low[1][a:b] = -s
    return top, low
