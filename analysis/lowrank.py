"""Low-rank kNN for head vectors: the merged-matrix view paying for itself.

A pattern of head (l, h) is p = k W_Q^T / sqrt(e) with k in R^e (e = d_head), so against any
vocabulary row s_v:  p . s_v = (k / sqrt(e)) . (s_v W_Q),  and  cos(p, s_v) = that / (|p| |s_v|).
Ranking p against S therefore equals ranking the e-dimensional k / sqrt(e) against the projected
vocabulary P_h = S W_Q[h] / |s_v|, an e/D = 1/12 of the work of the full search. Messages
m = v W_O work the same way with P_h = S W_O[h]^T / |s_v|.

The projected vocabularies (2 L of them, [H, V_words, e] each) depend only on the weights, so they
are built once per model and kept in the disk cache as .npy files, read memory-mapped.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cache import cache_dir, fingerprint
from .knn import _POOL, select_topk
from .spaces import Vocab, unembed_space

MIN_TOKENS = 64   # below this the full search is cheaper than reading the projected vocabularies


def _norms(S: np.ndarray) -> np.ndarray:
    n = np.sqrt(np.einsum("vd,vd->v", S, S, dtype=np.float64)).astype(np.float32)
    return np.where(n > 0, n, np.float32(1))


def build_projected(model, vocab: Vocab, kind: str, layer: int, metric: str) -> np.ndarray:
    """P [H, V_words, e]: the word vocabulary seen through each head's W_Q (patterns) or W_O^T (messages)."""
    p, cfg = model.params, model.cfg
    H, D, e = cfg.n_heads, cfg.d_model, cfg.d_head
    if kind == "pattern":   # S = LN1_l(W_E) = gamma * normed + beta, never built: S W = normed (gamma W) + beta W
        W = p.W_Q[layer].transpose(1, 0, 2).reshape(D, H * e)                      # [D, H e]
        g, b = p.ln1_w[layer], p.ln1_b[layer]
        P = vocab.normed @ (g[:, None] * W)                                         # [Vw, D] @ [D, H e]
        P += b @ W
        if metric == "cosine":
            P *= vocab.ln_index(g, b, metric).col_scale[:, None]                    # 1 / |s_v|
    elif kind == "message":
        S = unembed_space(p, vocab.words)
        P = S @ p.W_O[layer].reshape(H * e, D).T                                   # [Vw, D] @ [D, H e]
        if metric == "cosine":
            P /= _norms(S)[:, None]
    else:
        raise ValueError(f"kind must be 'pattern' or 'message', got {kind!r}")
    return np.ascontiguousarray(P.reshape(-1, H, e).transpose(1, 0, 2))           # [H, Vw, e]


def projected(model, vocab: Vocab, kind: str, layer: int, metric: str, use_cache: bool = True) -> np.ndarray:
    """The projected vocabulary from the disk cache (memory-mapped), building and storing it if absent."""
    if not use_cache:
        return build_projected(model, vocab, kind, layer, metric)
    path = cache_dir() / f"heads-{fingerprint_heads(model, vocab, metric)}" / f"{kind}-{layer}.npy"
    if path.is_file():
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            pass
    P = build_projected(model, vocab, kind, layer, metric)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, P)
        os.replace(tmp, path)
    except OSError:
        pass
    return P


def fingerprint_heads(model, vocab: Vocab, metric: str) -> str:
    return fingerprint(model, vocab, 0, metric, extra=(model.params.W_Q, model.params.W_O, model.params.ln1_w,
                                                      model.params.ln1_b))


def head_topk(model, vocab: Vocab, kind: str, coords: np.ndarray, full: np.ndarray, k: int, metric: str,
              use_cache: bool = True, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k words of every pattern or message vector via its low-rank coordinates.

    coords [L, H, T, e]: k / sqrt(e) (patterns) or v (messages); full [L, H, T, D]: the vectors themselves
    (only their norms are used, for cosine scores). Returns (ids, scores) [L * H * T, k], rows in (l, h, t) order.
    """
    from tqdm.auto import tqdm

    L, H, T, e = coords.shape
    ids = np.empty((L, H, T, k), np.int64)
    scores = np.empty((L, H, T, k), np.float32)
    if metric == "cosine":
        inv = np.float32(1) / np.maximum(np.linalg.norm(full, axis=-1), np.float32(1e-30))   # [L, H, T]
    for l in tqdm(range(L), desc=f"{kind} kNN", unit="layer", disable=not progress, leave=False):
        P = projected(model, vocab, kind, l, metric, use_cache)                   # [H, Vw, e]

        def one(h):
            S = coords[l, h] @ P[h].T                                               # [T, e] @ [e, Vw] -> [T, Vw]
            if metric == "cosine":
                S *= inv[l, h][:, None]
            return select_topk(S, k)

        for h, (i, s) in enumerate(_POOL.map(one, range(H))):
            ids[l, h], scores[l, h] = vocab.words[i], s
    return ids.reshape(-1, k), scores.reshape(-1, k)
