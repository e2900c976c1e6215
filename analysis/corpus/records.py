"""The store's tables from the merged Partial: each example located (file, document, token index) and shown
in its context, as pyarrow tables with the columns the README lists.

A context is the example's token between ⟦ ⟧ (a head's source between ⟨ ⟩), in the page's token notation
(search.spaces.show_token: a leading space is ·, a newline ⏎): up to CONTEXT_BEFORE tokens before it, from
its own window only (what the model saw), and CONTEXT_AFTER after it in the document.
"""
from __future__ import annotations

import numpy as np

from ..search.spaces import show_token
from .inputs import Corpus
from .topk import Partial, ranked

CONTEXT_BEFORE, CONTEXT_AFTER = 10, 4
GAP = 4                         # a head's context keeps this many tokens after its source and before its dest


class Shown:
    """Token ids -> their shown strings, each vocabulary entry decoded once."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, ids) -> list[str]:
        ids = [int(i) for i in ids]
        missing = sorted({i for i in ids if i not in self.cache})      # not set(self.cache): that is O(V) a call
        if missing:
            self.cache.update(zip(missing, (show_token(s) for s in self.tokenizer.token_strings(missing))))
        return [self.cache[i] for i in ids]


def _span(shown: Shown, ids: np.ndarray, a: int, b: int) -> str:
    return "".join(shown(ids[a:b])) if b > a else ""


def neuron_context(corpus: Corpus, shown: Shown, g: int, win_start: int, doc_end: int) -> str:
    ids = corpus.ids
    return (_span(shown, ids, max(win_start, g - CONTEXT_BEFORE), g) + "⟦" + shown(ids[g:g + 1])[0] + "⟧"
            + _span(shown, ids, g + 1, min(doc_end, g + 1 + CONTEXT_AFTER)))


def head_context(corpus: Corpus, shown: Shown, src: int, dest: int, win_start: int, doc_end: int) -> str:
    ids = corpus.ids
    s, d = shown(ids[src:src + 1])[0], shown(ids[dest:dest + 1])[0]
    head = _span(shown, ids, max(win_start, src - GAP), src)
    tail = _span(shown, ids, dest + 1, min(doc_end, dest + 1 + CONTEXT_AFTER))
    if src == dest:
        return f"{head}⟦⟨{s}⟩⟧{tail}"
    if dest - src - 1 <= 2 * GAP + 1:
        middle = _span(shown, ids, src + 1, dest)
    else:
        middle = _span(shown, ids, src + 1, src + 1 + GAP) + " … " + _span(shown, ids, dest - GAP, dest)
    return f"{head}⟨{s}⟩{middle}⟦{d}⟧{tail}"


def _where(corpus: Corpus, g: np.ndarray, seq_len: int):
    """Global indices -> (file names, doc numbers, token indices, window starts, document ends)."""
    d, t = corpus.locate(g)
    names = np.array([f["name"] for f in corpus.files], dtype=object)
    return (names[corpus.doc_file[d]], corpus.doc_number[d], t, g - t % seq_len, corpus.doc_start[d + 1])


def neuron_tables(p: Partial, corpus: Corpus, shown: Shown, L: int, seq_len: int):
    """(neurons, neuron_stats) as pyarrow tables; rows by layer, neuron, rank."""
    import pyarrow as pa

    vals, keys = ranked(p.n_vals, p.n_keys)                                   # [N, k]
    N, k = vals.shape
    m = N // L
    row = np.repeat(np.arange(N), k)
    g = keys.reshape(-1)
    files, docs, tidx, wstart, dend = _where(corpus, g, seq_len)
    contexts = [neuron_context(corpus, shown, int(a), int(w), int(e)) for a, w, e in zip(g, wstart, dend)]
    neurons = pa.table({"layer": pa.array(row // m, pa.int32()), "neuron": pa.array(row % m, pa.int32()),
                        "rank": pa.array(np.tile(np.arange(1, k + 1), N), pa.int32()),
                        "activation": pa.array(vals.reshape(-1), pa.float32()),
                        "file": pa.array(files.tolist(), pa.string()), "doc": pa.array(docs, pa.int64()),
                        "token_index": pa.array(tidx, pa.int64()), "token": pa.array(shown(corpus.ids[g]), pa.string()),
                        "context": pa.array(contexts, pa.string())})
    n = np.arange(N)
    stats = pa.table({"layer": pa.array(n // m, pa.int32()), "neuron": pa.array(n % m, pa.int32()),
                      "mean": pa.array(p.n_sum / p.tokens, pa.float64()), "max": pa.array(p.n_max, pa.float32()),
                      "frac_active": pa.array(p.n_pos / p.tokens, pa.float64()),
                      "tokens": pa.array(np.full(N, p.tokens), pa.int64())})
    return neurons, stats


def head_table(p: Partial, corpus: Corpus, shown: Shown, H: int, seq_len: int, n_ctx: int):
    """heads as a pyarrow table: each head's top attention weights to a source other than position 0, and
    its mean attention on position 0 (over every query after it) in each of its rows."""
    import pyarrow as pa

    vals, keys = ranked(p.h_vals, p.h_keys)                                   # [Hs, k]
    Hs, k = vals.shape
    row = np.repeat(np.arange(Hs), k)
    key = keys.reshape(-1)
    dest, s = key // n_ctx, key % n_ctx                                       # s: the source's window position
    files, docs, tidx, wstart, dend = _where(corpus, dest, seq_len)
    src = wstart + s - 1
    contexts = [head_context(corpus, shown, int(a), int(b), int(w), int(e))
                for a, b, w, e in zip(src, dest, wstart, dend)]
    return pa.table({"layer": pa.array(row // H, pa.int32()), "head": pa.array(row % H, pa.int32()),
                     "rank": pa.array(np.tile(np.arange(1, k + 1), Hs), pa.int32()),
                     "attention": pa.array(vals.reshape(-1), pa.float32()),
                     "file": pa.array(files.tolist(), pa.string()), "doc": pa.array(docs, pa.int64()),
                     "token_index": pa.array(tidx, pa.int64()), "token": pa.array(shown(corpus.ids[dest]), pa.string()),
                     "source_index": pa.array(tidx - (dest - src), pa.int64()),
                     "source_token": pa.array(shown(corpus.ids[src]), pa.string()),
                     "context": pa.array(contexts, pa.string()),
                     "attention_on_0": pa.array(np.repeat(p.h_sum0 / p.tokens, k), pa.float64())})
