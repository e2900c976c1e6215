"""nearest_words: the vocabulary words closest to any vector, searched as the report searches.

(The core never imports analysis, so this is analysis.nearest_words(model, ...), not a Model method.)
"""
from __future__ import annotations

import weakref


from minigpt2.errors import InputError

from .guard import check_int, check_model, check_range, check_vector, weights
from .knn import check_metric
from .spaces import Vocab, build_vocab

_VOCABS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # model -> Vocab, built once per model


def vocab_of(model) -> Vocab:
    if model not in _VOCABS:
        check_range(model.cfg.d_model, weights(model))      # once per model, as the vocabulary is built
        _VOCABS[model] = build_vocab(model)
    return _VOCABS[model]


def nearest_words(model, vector, space: str = "unembed", layer: int | None = None, k: int = 10,
                  metric: str = "cosine") -> list[tuple[str, float]]:
    """The k whole words nearest to vector [D], best first, as (word, score).

    space: "unembed" (lnf_w * W_E: for anything added to the residual: messages, neuron outputs, rows of a
    decomposition), "ln1" (LN1 of layer `layer` applied to W_E: for patterns) or "ln2" (LN2 of `layer`: for
    neuron inputs). The BPE-fragment filter applies, as in the report. Every argument is checked before
    any work (InputError); weights beyond what float32 can search give NumericError (analysis.guard).
    """
    check_model(model)
    check_metric(metric)
    cfg, p = model.cfg, model.params
    v = check_vector(vector, cfg.d_model)
    if space not in ("unembed", "ln1", "ln2"):
        raise InputError(f'space must be "unembed", "ln1" or "ln2", got {space!r}')
    if space != "unembed":
        if layer is None:
            raise InputError(f'space="{space}" needs layer= in 0..{cfg.n_layers - 1}')
        layer = check_int(layer, "layer", 0, cfg.n_layers - 1)
    elif layer is not None:
        raise InputError('layer= applies to space="ln1" or "ln2"; the unembedding has no layer')
    k = check_int(k, "k", 1)
    if metric == "dot":                                      # a cosine query is normalised first: any size
        check_range(cfg.d_model, {"the vector": v})
    vocab = vocab_of(model)
    if k > len(vocab.words):
        raise InputError(f"k must be in 1..{len(vocab.words)} (the vocabulary's words), got {k}")
    if space == "unembed":
        index = vocab.unembed_index(p.lnf_w, metric)
    else:
        w, b = (p.ln1_w, p.ln1_b) if space == "ln1" else (p.ln2_w, p.ln2_b)
        index = vocab.ln_index(w[layer], b[layer], metric)
    ids, scores = index.search(v[None], k)
    return [(vocab.strings[i], float(s)) for i, s in zip(ids[0].tolist(), scores[0].tolist())]
