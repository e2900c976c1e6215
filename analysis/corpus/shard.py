"""One shard's work, as a Dask worker runs it: its windows through Model.run, reduced to a Partial.

A worker process loads the model once (the first shard it gets) and keeps it, its weights memory-mapped
from the cache folder so that a machine's workers share one copy (corpus.mapped); the checked fingerprint
guarantees that a worker on another machine uses the same weights as the client. Activations come from
the Trace of each window (mlp_acts, attn), the same forward pass as everywhere else; candidates are
gathered over a batch of windows and reduced by topk.fold, so memory stays at one batch (BATCH_TOKENS)
whatever the shard's size.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .topk import Partial, fold

BATCH_TOKENS = 1024             # tokens gathered before a selection: [L m, ~1024 + k] candidates at a time
_MODELS: dict = {}              # this process's model, by (source, fingerprint)


def model_fingerprint(model) -> str:
    """A hash of everything the store's numbers depend on: the config, the tokenizer and every weight."""
    h = hashlib.blake2b(digest_size=16)
    h.update(model.cfg.describe().encode())
    if model.tokenizer is not None:
        h.update(model.tokenizer.fingerprint().encode())
    for name in sorted(vars(model.params)):
        a = np.ascontiguousarray(getattr(model.params, name))
        h.update(f"{name}{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def worker_model(source: str, fingerprint: str):
    """The model at source, loaded once per process (its weights memory-mapped: corpus.mapped) and checked
    against the client's fingerprint."""
    model = _MODELS.get((source, fingerprint))
    if model is None:
        from .mapped import load_mapped

        model = load_mapped(source, fingerprint, model_fingerprint)
        _MODELS.clear()
        _MODELS[(source, fingerprint)] = model
    return model


class _Batch:
    """Candidates gathered from a few windows, then folded into the running top-k."""

    def __init__(self, N: int, Hs: int, k: int):
        self.k, self.cols = k, []
        self.n = (np.zeros((N, 0), np.float32), np.zeros((N, 0), np.int64))
        self.h = (np.zeros((Hs, 0), np.float32), np.zeros((Hs, 0), np.int64))

    def add(self, n_vals, n_keys, h_vals, h_keys) -> bool:
        """Whether this filled a batch (and folded it in)."""
        self.cols.append((n_vals, n_keys, h_vals, h_keys))
        if sum(c[0].shape[1] for c in self.cols) < BATCH_TOKENS:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        if not self.cols:
            return
        nv, nk, hv, hk = zip(*self.cols)
        self.cols = []
        cat = np.concatenate
        self.n = fold(*self.n, cat(nv, axis=1), cat(nk), self.k)
        self.h = fold(*self.h, cat(hv, axis=1), cat(hk), self.k)


def report(topic: str | None, shard: int, done: int) -> None:
    """Tell the client how far this shard is (a Dask worker event on topic; nothing outside a worker)."""
    if topic is None:
        return
    try:
        from distributed import get_worker

        get_worker().log_event(topic, (shard, done))
    except (ImportError, ValueError):
        pass


def run_shard(source: str, fingerprint: str, ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
              k: int, topic: str | None = None, shard: int = 0) -> Partial:
    """Windows (their tokens ids, concatenated; each one's global start and length) -> Partial.

    Each window runs as <|endoftext|> + its tokens; position 0 is never ranked. A window's position p >= 1
    is the token starts + p - 1. topic: where to report progress (shard, tokens done) every batch."""
    model = worker_model(source, fingerprint)
    cfg = model.cfg
    L, H, m, n_ctx = cfg.n_layers, cfg.n_heads, cfg.d_mlp, cfg.n_ctx
    N, Hs = L * m, L * H
    batch = _Batch(N, Hs, k)
    n_sum, n_pos = np.zeros(N, np.float64), np.zeros(N, np.int64)
    n_max = np.full(N, -np.inf, np.float32)
    h_sum0 = np.zeros(Hs, np.float64)
    offset = 0
    for start, T in zip(starts.tolist(), lengths.tolist()):
        window = np.concatenate([[cfg.bos_token_id], ids[offset:offset + T]]).astype(np.int64)
        offset += T
        tr = model.run(window)
        acts = tr.mlp_acts[:, 1:, :].transpose(0, 2, 1).reshape(N, T)          # [L, T, m] -> [L m, T]
        n_sum += acts.sum(axis=1, dtype=np.float64)
        n_pos += (acts > 0).sum(axis=1)
        np.maximum(n_max, acts.max(axis=1), out=n_max)
        q, s = np.tril_indices(T)                                              # dest q+1, source s+1 <= q+1
        q, s = q[q >= 1], s[q >= 1]        # a query at window position 1 has no choice: its one source
                                           #   besides 0 is itself, weighted 1 - its attention on 0
        attn = tr.attn[:, :, 1:, 1:][:, :, q, s].reshape(Hs, q.size)           # [L, H, P] -> [L H, P]
        h_sum0 += tr.attn[:, :, 1:, 0].sum(axis=2, dtype=np.float64).reshape(Hs)
        if batch.add(np.ascontiguousarray(acts), start + np.arange(T, dtype=np.int64),
                     attn, (start + q).astype(np.int64) * n_ctx + s + 1):
            report(topic, shard, offset)
    batch.flush()
    return Partial(*batch.n, n_sum, n_pos, n_max, *batch.h, h_sum0, int(lengths.sum()))
