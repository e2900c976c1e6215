"""Static neuron meanings (input and output words of every FFN neuron), computed once per model and cached on disk.

They do not depend on the prompt. For GPT-2 small that is 2 x 36,864 searches over the vocabulary:
tens of seconds, so the result is kept in the user's cache directory, keyed by a fingerprint of
the weights and the settings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import diskcache
from .spaces import Vocab


@dataclass(frozen=True)
class NeuronMeanings:
    in_ids: np.ndarray       # [L, m, k] words W_in[l][:, n] is looking for (vs LN2_l(W_E))
    in_scores: np.ndarray    # [L, m, k]
    out_ids: np.ndarray      # [L, m, k] words W_out[l][n] writes (vs lnf_w * W_E)
    out_scores: np.ndarray   # [L, m, k]
    neg_ids: np.ndarray      # [L, m, k] words -W_out[l][n] writes: a negative activation's meaning
    neg_scores: np.ndarray   # [L, m, k] (most negative first)


def compute_neuron_meanings(model, vocab: Vocab, k: int, metric: str, progress: bool = True) -> NeuronMeanings:
    from minigpt2.progress import tqdm

    p, cfg = model.params, model.cfg
    L, m = cfg.n_layers, cfg.d_mlp
    shape = (L, m, k)
    res = {n: np.empty(shape, np.int64 if n.endswith("ids") else np.float32)
           for n in ("in_ids", "in_scores", "out_ids", "out_scores", "neg_ids", "neg_scores")}
    out_index = vocab.unembed_index(p.lnf_w, metric)                                 # lnf_w * W_E[words]
    in_indexes = vocab.ln_indexes(p.ln2_w, p.ln2_b, metric)                          # LN2_l(W_E[words])
    with tqdm(total=2 * L, desc="neuron meanings (once per model)", unit="step", disable=not progress,
              leave=False) as bar:
        for l in range(L):
            res["in_ids"][l], res["in_scores"][l] = in_indexes[l].search(p.W_in[l].T, k)   # [m, D] queries
            bar.update()
            (res["out_ids"][l], res["out_scores"][l],
             res["neg_ids"][l], res["neg_scores"][l]) = out_index.search_both(p.W_out[l], k)
            bar.update()
    return NeuronMeanings(**res)


def neuron_meanings(model, vocab: Vocab, k: int, metric: str, use_cache: bool = True,
                    progress: bool = True) -> NeuronMeanings:
    """Load from the disk cache (checked: see diskcache), or compute (with a progress bar) and store."""
    p, cfg = model.params, model.cfg
    key = diskcache.fingerprint(model, vocab.words, f"neurons|{k}|{metric}",
                                (p.W_E, p.W_in, p.W_out, p.ln2_w, p.ln2_b, p.lnf_w))
    path = diskcache.cache_dir() / f"neurons-{key}.bin"
    shape = (cfg.n_layers, cfg.d_mlp, k)
    expect = {n: (np.int64 if n.endswith("ids") else np.float32, shape) for n in NeuronMeanings.__dataclass_fields__}
    if use_cache:
        found = diskcache.load(path, key, expect)
        if found is not None:
            if all(((a >= 0) & (a < cfg.d_vocab)).all() for n, a in found.items() if n.endswith("ids")):
                return NeuronMeanings(**found)
            diskcache.warn(f"cache file {path} holds token ids outside the vocabulary; rebuilding it")
    meanings = compute_neuron_meanings(model, vocab, k, metric, progress)
    if use_cache:
        diskcache.save(path, key, meanings.__dict__)
    return meanings
