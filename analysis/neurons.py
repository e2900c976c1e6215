"""Static neuron meanings (input and output words of every FFN neuron), computed once per model and cached on disk.

They do not depend on the prompt. For GPT-2 small that is 2 x 36,864 searches over the vocabulary:
tens of seconds, so the result is kept in the user's cache directory, keyed by a fingerprint of
the weights and the settings.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .spaces import Vocab

CACHE_VERSION = "1"


def cache_dir() -> Path:
    """$MINIGPT2_CACHE, else $XDG_CACHE_HOME/minigpt2, else ~/.cache/minigpt2."""
    if os.environ.get("MINIGPT2_CACHE"):
        return Path(os.environ["MINIGPT2_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minigpt2"


@dataclass(frozen=True)
class NeuronMeanings:
    in_ids: np.ndarray       # [L, m, k] words W_in[l][:, n] is looking for (vs LN2_l(W_E))
    in_scores: np.ndarray    # [L, m, k]
    out_ids: np.ndarray      # [L, m, k] words W_out[l][n] writes (vs lnf_w * W_E)
    out_scores: np.ndarray   # [L, m, k]
    neg_ids: np.ndarray      # [L, m, k] words -W_out[l][n] writes: a negative activation's meaning
    neg_scores: np.ndarray   # [L, m, k] (most negative first)


def fingerprint(model, vocab: Vocab, label: str, arrays: tuple) -> str:
    """Hash of the settings (label), the word filter and a strided sample (plus the sum) of each weight used."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{CACHE_VERSION}|{label}|{model.cfg.describe()}".encode())
    h.update(vocab.words.tobytes())
    for arr in arrays:
        flat = arr.reshape(-1)
        h.update(np.ascontiguousarray(flat[:: max(1, flat.size // 65536)]).tobytes())
        h.update(np.float64(flat.sum(dtype=np.float64)).tobytes())
    return h.hexdigest()


def compute_neuron_meanings(model, vocab: Vocab, k: int, metric: str, progress: bool = True) -> NeuronMeanings:
    from tqdm.auto import tqdm

    p, cfg = model.params, model.cfg
    L, m = cfg.n_layers, cfg.d_mlp
    shape = (L, m, k)
    res = {n: np.empty(shape, np.int64 if n.endswith("ids") else np.float32)
           for n in ("in_ids", "in_scores", "out_ids", "out_scores", "neg_ids", "neg_scores")}
    out_index = vocab.unembed_index(p.lnf_w, metric)                                 # lnf_w * W_E[words]
    with tqdm(total=2 * L, desc="neuron meanings (once per model)", unit="step", disable=not progress,
              leave=False) as bar:
        for l in range(L):
            index = vocab.ln_index(p.ln2_w[l], p.ln2_b[l], metric)                 # LN2_l(W_E[words])
            res["in_ids"][l], res["in_scores"][l] = index.search(p.W_in[l].T, k)   # [m, D] queries
            bar.update()
            (res["out_ids"][l], res["out_scores"][l],
             res["neg_ids"][l], res["neg_scores"][l]) = out_index.search_both(p.W_out[l], k)
            bar.update()
    return NeuronMeanings(**res)


def neuron_meanings(model, vocab: Vocab, k: int, metric: str, use_cache: bool = True,
                    progress: bool = True) -> NeuronMeanings:
    """Load from the disk cache, or compute (with a progress bar) and store atomically."""
    p = model.params
    key = fingerprint(model, vocab, f"neurons|{k}|{metric}", (p.W_E, p.W_in, p.W_out, p.ln2_w, p.ln2_b, p.lnf_w))
    path = cache_dir() / f"neurons-{key}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path) as f:
                return NeuronMeanings(**{name: f[name] for name in NeuronMeanings.__dataclass_fields__})
        except (OSError, KeyError, ValueError):
            pass  # unreadable or old: recompute below and replace it
    meanings = compute_neuron_meanings(model, vocab, k, metric, progress)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
            np.savez(tmp, **meanings.__dict__)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs time
    return meanings
