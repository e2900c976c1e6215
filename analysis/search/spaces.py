"""Vocabulary spaces: the vocabulary as the model sees it at the point where a vector is used.

| vector kind                        | how the model uses it              | compared with        |
|------------------------------------|------------------------------------|----------------------|
| pattern p_k at layer l             | dotted with LN1_l(resid)           | LN1_l(W_E)           |
| FFN input neuron W_in[l][:, n]     | dotted with LN2_l(resid_mid)       | LN2_l(W_E)           |
| message, W_out[l][n], contribution | added to the residual, read via ln_f | lnf_w * W_E        |
| residual stream (logit lens)       | the whole vector, through ln_f     | logits (ranked)      |
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from minigpt2.layers import normalize
from minigpt2.weights import Params


@dataclass(frozen=True)
class Vocab:
    """What the analysis knows of the vocabulary: per-token text, the word filter and the token bias."""
    strings: list[str]       # [V] each token decoded alone
    words: np.ndarray        # [n_words] ids kept by the word filter (ascending)
    bias: np.ndarray         # [V] b_U = ln_f.bias . W_E[v], the token's inherent logit bias
    bias_z: np.ndarray       # [V] the bias in standard deviations from its vocabulary mean
    normed_aug: np.ndarray | None = None  # [n_words, D+1] n_w = LayerNorm-normalised W_E[words] (no gain or
                                          #   bias), and a last column mean_w / std_w, so W_E[w] = std_w (n_w, last) . (I, 1)
    normed_sq: np.ndarray | None = None   # [n_words, D] n_w squared, or None: squared in blocks when needed
    row_std: np.ndarray | None = None     # [n_words] std_w = sqrt(var(W_E[w]) + eps)
    filter: str = "whole words"           # which rule chose the words: "whole words" or "valid text"

    @cached_property
    def shown(self) -> list[str]:
        """[V] each token with its word boundaries visible (show_token), made once per vocabulary."""
        return [show_token(s) for s in self.strings]

    @cached_property
    def clipped(self) -> list[str]:
        """[V] each token as text, clipped to TOKEN_CHARS: what a table shows of a raw token."""
        return [clip(s) for s in self.strings]

    @property
    def normed(self) -> np.ndarray:
        return self.normed_aug[:, :-1]

    def ln_index(self, gamma: np.ndarray, beta: np.ndarray, metric: str):
        """Index over LN(W_E[words]) for a LayerNorm with this gain and bias (LN1_l or LN2_l)."""
        return self.ln_indexes(gamma[None], beta[None], metric)[0]

    def ln_indexes(self, gammas: np.ndarray, betas: np.ndarray, metric: str) -> list:
        """ln_index for each of several LayerNorms (gammas, betas [n, D]), their key norms in one pass."""
        from .knn import LNIndex, ln_sq_norms
        sq = ln_sq_norms(self.normed, self.normed_sq, gammas, betas) if metric == "cosine" else None   # [Vw, n]
        return [LNIndex(self.normed, self.normed_sq, g, b, metric, ids=self.words,
                        sq_norms=None if sq is None else sq[:, i]) for i, (g, b) in enumerate(zip(gammas, betas))]

    def unembed_index(self, lnf_w: np.ndarray, metric: str):
        """Index over lnf_w * W_E[words] (the unembedding space), from the same normalised base."""
        from .knn import ScaledIndex
        return ScaledIndex(self.normed_aug, self.normed_sq, lnf_w, self.row_std, metric, ids=self.words)

    @property
    def n_dropped(self) -> int:
        return len(self.strings) - len(self.words)


_SHOW = {**{c: f"\\x{c:02x}" for c in [*range(32), 127]},      # other control characters as \x00 (a page
         ord("\n"): "⏎", ord("\r"): "␍", ord("\t"): "⇥"}           #   would show them as blanks, or not at all)
TOKEN_CHARS = 80   # what one token may cost on the page, in a CSV cell or a printout: GPT-2's longest is 66


def clip(s: str) -> str:
    """s, or its first TOKEN_CHARS - 1 characters and an ellipsis: a hostile tokenizer's 5,000-character
    tokens must not turn a short prompt into a report of hundreds of megabytes."""
    return s if len(s) <= TOKEN_CHARS else s[: TOKEN_CHARS - 1] + "…"


def show_token(s: str) -> str:
    """A token with its boundaries visible: leading spaces as ·, newlines as ⏎, other control characters as
    \x00 ("·home" is the word " home", "home" the word piece without a space)."""
    stripped = s.lstrip(" ")
    return clip(("·" * (len(s) - len(stripped)) + stripped).translate(_SHOW))


def token_bias(p: Params) -> np.ndarray:
    """b_U[v] = ln_f.bias . W_E[v]: the logit every context gives token v before any evidence. [V]"""
    return p.W_E @ p.lnf_b                                            # [V, D] @ [D] -> [V]


def standardize(b: np.ndarray) -> np.ndarray:
    return ((b - b.mean()) / (b.std() + np.float32(1e-12))).astype(np.float32)


def word_ids(tokenizer, d_vocab: int, strings: list[str] | None = None, whole_words: bool = True) -> np.ndarray:
    """Ids of whole-word tokens: the BPE-fragment filter.

    A token is kept when (1) it decodes alone to valid, non-blank text (no U+FFFD from a cut
    multi-byte character), (2) encoding that text gives back exactly this one token, and (3) it is
    a whole word: it starts with a space (GPT-2 marks word starts so), or the same text with a
    leading space is also one token ("home" / " home"), or it is a special token (<|endoftext|>).
    Byte fragments fail (1) or (2); word pieces such as "alysis" fail (3). With whole_words=False,
    only (1) and (2) apply (for byte-level toy vocabularies, which have no whole words).
    """
    strings = tokenizer.vocab_strings() if strings is None else strings
    encoded = tokenizer.encode_batch(strings)
    vocab = {s: i for i, s in enumerate(strings)}
    special = {i for i in range(d_vocab) if strings[i].startswith("<|") and strings[i].endswith("|>")}
    keep = []
    for i, (s, e) in enumerate(zip(strings, encoded)):
        if i in special:
            keep.append(i)
            continue
        if not s.strip() or "\ufffd" in s or e != [i]:
            continue
        if not whole_words or s.startswith(" ") or (" " + s) in vocab:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def build_vocab(model, min_words: int = 1, use_cache: bool = False) -> Vocab:
    """The analysis' view of the vocabulary. If the whole-word filter leaves fewer than min_words tokens
    (a byte-level toy vocabulary), it falls back to every token of valid text (Vocab.filter says which).

    use_cache: the filter's result (it encodes all V tokens) comes from the disk cache when the tokenizer
    is the same, byte for byte, and the normalised word vectors when W_E is the same."""
    b = token_bias(model.params)
    strings = model.tokenizer.vocab_strings()
    words, rule = filtered_words(model, strings, min_words, use_cache)
    normed_aug, row_std = cached_normalized_words(model, words, use_cache)
    return Vocab(strings=strings, words=words, bias=b, bias_z=standardize(b), normed_aug=normed_aug,
                 normed_sq=None, row_std=row_std, filter=rule)


def filtered_words(model, strings: list[str], min_words: int, use_cache: bool) -> tuple[np.ndarray, str]:
    """(word ids, rule): the whole-word filter, or valid text when it leaves fewer than min_words tokens."""
    from . import diskcache

    V = model.cfg.d_vocab
    key = f"words|{V}|{min_words}|{model.tokenizer.fingerprint()}"
    path = diskcache.cache_dir() / f"words-{diskcache.short_hash(key)}.bin"
    if use_cache:
        found = diskcache.load(path, key, {"words": (np.int64, (None,)), "whole": (np.int64, (1,))})
        if found is not None and ((found["words"] >= 0) & (found["words"] < V)).all():
            return found["words"], "whole words" if found["whole"][0] else "valid text"
    words, rule = word_ids(model.tokenizer, V, strings), "whole words"
    if len(words) < min_words:
        words, rule = word_ids(model.tokenizer, V, strings, whole_words=False), "valid text"
    if use_cache:
        diskcache.save(path, key, {"words": words, "whole": np.array([rule == "whole words"], np.int64)})
    return words, rule


def cached_normalized_words(model, words: np.ndarray, use_cache: bool) -> tuple[np.ndarray, np.ndarray]:
    """normalized_words, kept in the disk cache (memory-mapped on a warm run: no 128 MB gather and pass)."""
    from . import diskcache

    W_E, eps = model.params.W_E, model.cfg.layer_norm_eps
    if not use_cache:
        return normalized_words(W_E, words, eps)
    key = diskcache.fingerprint(model, words, f"normed|{eps!r}", (W_E,))
    path = diskcache.cache_dir() / f"normed-{key}.bin"
    Vw, D = len(words), W_E.shape[1]
    found = diskcache.load(path, key, {"normed_aug": (np.float32, (Vw, D + 1)), "row_std": (np.float32, (Vw,))})
    if found is not None:
        return found["normed_aug"], found["row_std"]
    normed_aug, row_std = normalized_words(W_E, words, eps)
    diskcache.save(path, key, {"normed_aug": normed_aug, "row_std": row_std})
    return normed_aug, row_std


def normalized_words(W_E: np.ndarray, words: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """([n_words, D+1] normalised rows with mean/std appended, [n_words] std): see Vocab.normed_aug."""
    x = W_E[words]                                                             # [Vw, D]
    D = x.shape[1]
    out = np.empty((len(words), D + 1), np.float32)
    mean = x.mean(axis=1)
    np.subtract(x, mean[:, None], out=out[:, :D])
    std = np.sqrt(np.einsum("vd,vd->v", out[:, :D], out[:, :D]) / np.float32(D) + np.float32(eps))
    out[:, :D] *= (np.float32(1) / std)[:, None]
    out[:, D] = mean / std
    return out, std


def ln1_space(p: Params, layer: int, eps: float, rows=slice(None)) -> np.ndarray:
    """LN1_l(W_E): the vocabulary as head inputs at layer l see it. [V, D]"""
    return normalize(p.W_E[rows], eps) * p.ln1_w[layer] + p.ln1_b[layer]


def ln2_space(p: Params, layer: int, eps: float, rows=slice(None)) -> np.ndarray:
    """LN2_l(W_E): the vocabulary as the neurons of layer l see it. [V, D]"""
    return normalize(p.W_E[rows], eps) * p.ln2_w[layer] + p.ln2_b[layer]


def unembed_space(p: Params, rows=slice(None)) -> np.ndarray:
    """lnf_w * W_E: a vector x added to the residual moves logit v by (x - mean x) . (lnf_w * W_E[v]) / std. [V, D]

    (The centring is a projection that W_E rows barely feel; the 1/std is one positive scalar per position.)
    """
    out = p.W_E[rows]                     # a copy (fancy index) or a view (slice): multiply into a new array once
    return np.multiply(out, p.lnf_w, out=out) if out.base is None else out * p.lnf_w
