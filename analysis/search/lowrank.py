"""Low-rank kNN for head vectors: the merged-matrix view paying for itself.

A pattern of head (l, h) is p = k W_Q^T / sqrt(e) with k in R^e (e = d_head), so against any
vocabulary row s_v:  p . s_v = (k / sqrt(e)) . (s_v W_Q),  and  cos(p, s_v) = that / (|p| |s_v|).
Ranking p against S therefore equals ranking the e-dimensional k / sqrt(e) against the projected
vocabulary P_h = S W_Q[h] / |s_v|, an e/D = 1/12 of the work of the full search. Messages
m = v W_O work the same way with P_h = S W_O[h]^T / |s_v|.

The projected vocabularies (2 L of them, [H, V_words, e] each) depend only on the weights, so they
are built once per model and kept in the disk cache (checked on every load: see diskcache).
"""
from __future__ import annotations

import os
import queue
from pathlib import Path

import numpy as np

from . import diskcache
from .select import select_topk
from .spaces import Vocab

MIN_TOKENS = 64   # below this the full search is cheaper than reading the projected vocabularies
HEAD_SCORE_BYTES = 128 << 20  # score buffers, all workers together: 64 MiB a worker on 2 cores (smaller blocks
                              # slow the matmul down: 16 MiB cost 15%, 4 MiB 60%)
MIN_WORKER_BYTES = 32 << 20   # ... but never less than this a worker (many cores: more memory, not slower blocks)


def build_projected(model, vocab: Vocab, kind: str, layer: int, metric: str) -> np.ndarray:
    """P [H, V_words, e]: the word vocabulary seen through each head's W_Q (patterns) or W_O^T (messages).

    Both spaces are the vocabulary's affine indexes (LN1_l(W_E), lnf_w * W_E) projected through W, so
    neither 128 MB space is ever built.
    """
    p, cfg = model.params, model.cfg
    H, D, e = cfg.n_heads, cfg.d_model, cfg.d_head
    if kind == "pattern":
        index = vocab.ln_index(p.ln1_w[layer], p.ln1_b[layer], metric)                # LN1_l(W_E[words])
        W = p.W_Q[layer].transpose(1, 0, 2).reshape(D, H * e)                          # [D, H e]
    elif kind == "message":
        index = vocab.unembed_index(p.lnf_w, metric)                                   # lnf_w * W_E[words]
        W = p.W_O[layer].reshape(H * e, D).T                                           # [D, H e]
    else:
        raise ValueError(f"kind must be 'pattern' or 'message', got {kind!r}")
    P = index.project(W)                                                               # [Vw, H e]
    return np.ascontiguousarray(P.reshape(-1, H, e).transpose(1, 0, 2))               # [H, Vw, e]


def cache_folder(model, vocab: Vocab, metric: str) -> Path:
    """Where this model's projected vocabularies live (one hash of the weights per search, not per layer)."""
    return diskcache.cache_dir() / f"heads-{fingerprint_heads(model, vocab, metric)}"


def fingerprint_heads(model, vocab: Vocab, metric: str) -> str:
    p = model.params
    return diskcache.fingerprint(model, vocab.words, f"heads|{metric}",
                                 (p.W_E, p.W_Q, p.W_O, p.ln1_w, p.ln1_b, p.lnf_w))


def projected(model, vocab: Vocab, kind: str, layer: int, metric: str, folder: Path | None) -> np.ndarray:
    """The projected vocabulary [H, V_words, e] from the cache folder (memory-mapped, read-only), building
    and storing it if absent or damaged (folder None: build it, store nothing)."""
    if folder is None:
        return build_projected(model, vocab, kind, layer, metric)
    cfg = model.cfg
    path = folder / f"{kind}-{layer}.bin"
    key = f"{folder.name}|{kind}|{layer}"
    shape = (cfg.n_heads, len(vocab.words), cfg.d_head)
    found = diskcache.load(path, key, {"P": (np.float32, shape)})
    if found is not None:
        return found["P"]
    P = build_projected(model, vocab, kind, layer, metric)
    diskcache.save(path, key, {"P": P})
    return P


def head_topk(model, vocab: Vocab, kind: str, coords: np.ndarray, norms: np.ndarray, k: int, metric: str,
              use_cache: bool = True, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k words of every pattern or message vector via its low-rank coordinates.

    coords [L, H, T, e]: k / sqrt(e) (patterns) or v (messages); norms [L, H, T]: the full vectors' norms
    (Trace.pattern_norms / message_norms, from the Gram matrices: the D-wide vectors are never built), which
    scale the cosine scores only (one number per query: the ranking does not depend on it).
    Returns (ids, scores) [L * H * T, k], rows in (l, h, t) order.

    Heads are shared out to one worker thread per core, each with single-threaded BLAS and its own score
    buffer: a head's scores come from [V_words, e] @ [e, T] matmuls (this orientation runs 5-15% faster in
    OpenBLAS than [T, e] @ [e, V_words]; the selection reads the transposed scores as fast), then the same
    worker selects their top k. Measured 20% faster than one two-threaded matmul beside a selection thread
    (benchmarks/README.md).
    """
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import ThreadpoolController
    from minigpt2.progress import tqdm

    L, H, T, e = coords.shape
    Vw = len(vocab.words)
    ids = np.empty((L, H, T, k), np.int64)
    scores = np.empty((L, H, T, k), np.float32)
    if metric == "cosine":   # cos = (c . P_v) / |full|: scale the query coordinates, not the scores
        coords = coords * (np.float32(1) / np.maximum(norms, np.float32(1e-30)))[..., None]
    workers = min(H, _cores())
    per_worker = max(HEAD_SCORE_BYTES // workers, MIN_WORKER_BYTES)
    rows = max(1, min(T, per_worker // (4 * Vw)))                                  # ~400 queries a block (2 cores)
    buffers = queue.SimpleQueue()
    for _ in range(workers):
        buffers.put(np.empty(rows * Vw, np.float32))
    folder = cache_folder(model, vocab, metric) if use_cache else None

    def one_head(P_h: np.ndarray, l: int, h: int) -> None:
        buf = buffers.get()
        try:
            for a in range(0, T, rows):
                b = min(T, a + rows)
                St = buf[: Vw * (b - a)].reshape(Vw, b - a)
                np.matmul(P_h, coords[l, h, a:b].T, out=St)                         # [Vw, e] @ [e, r] -> [Vw, r]
                i, sc = select_topk(St.T, k)
                ids[l, h, a:b], scores[l, h, a:b] = vocab.words[i], sc
        finally:
            buffers.put(buf)

    blas = ThreadpoolController()
    with ThreadPoolExecutor(workers) as pool:
        for l in tqdm(range(L), desc=f"{kind} kNN", unit="layer", disable=not progress, leave=False):
            P = projected(model, vocab, kind, l, metric, folder)    # [H, Vw, e]; a cold cache builds it with all BLAS threads
            with blas.limit(limits=1, user_api="blas"):
                jobs = [pool.submit(one_head, P[h], l, h) for h in range(H)]
                try:
                    for job in jobs:
                        job.result()
                except BaseException:
                    for job in jobs:
                        job.cancel()
                    raise
    return ids.reshape(-1, k), scores.reshape(-1, k)


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                                   # not Linux
        return max(1, os.cpu_count() or 1)
