"""The kNN orchestration of one analysis: which vectors are searched against which vocabulary space.

Context holds one prompt's run and the settings; the functions here turn its vectors into Matches
(patterns, messages, neurons) and run the logit lens. The table builders (tables.py) only read these.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..search.knn import LNIndex, VocabIndex
from ..search.lowrank import MIN_TOKENS, head_topk
from ..search.matches import Matches
from ..search.neurons import NeuronMeanings
from ..search.select import select_topk
from ..search.spaces import Vocab, clip, show_token


@dataclass
class Context:
    """One prompt's run, as the tables need it."""
    model: object
    trace: object
    vocab: Vocab
    tokens: list[str]          # [T] each token of the prompt decoded alone
    k: int = 10
    metric: str = "cosine"
    bias_threshold: float = 2.0
    use_cache: bool = True     # disk cache for neuron meanings and projected head vocabularies
    progress: bool = False

    def matches(self, ids, scores, shape=None) -> Matches:
        return Matches.make(ids, scores, self.vocab, self.bias_threshold, shape)

    @cached_property
    def unembed_index(self):
        """The words as the residual stream's readout sees them (lnf_w * W_E), built once per analysis."""
        return self.vocab.unembed_index(self.model.params.lnf_w, self.metric)

    @cached_property
    def _word_set(self) -> set[int]:
        return set(self.vocab.words.tolist())

    def label(self, i: int) -> str:
        """A token as the evolution tables show it: a whole word as ·word, a BPE fragment in [brackets],
        a byte fragment (no text alone) as its bytes, e.g. [<e2 80>]."""
        i = int(i)
        s = self.vocab.strings[i]
        if "\ufffd" in s:
            s = clip("<" + self.model.tokenizer.token_bytes(i).hex(" ") + ">")
        else:
            s = show_token(s)
        return s if i in self._word_set else f"[{s}]"

    def token_columns(self) -> list[str]:
        """Column names for the prompt's tokens: "0:<|endoftext|>", "1:·The", ... (· a leading space)."""
        return [f"{t}:{show_token(s)}" for t, s in enumerate(self.tokens)]


# -- head vectors -------------------------------------------------------------------------------

def pattern_matches(ctx: Context) -> Matches:
    """Top words of every pattern p[l, h, t] against LN1_l(W_E): Matches of shape [L, H, T]."""
    tr = ctx.trace
    shape = tr.attn.shape[:3]
    if tr.n_tokens >= MIN_TOKENS:   # low rank: rank keys / sqrt(e) against LN1_l(W_E) W_Q[h]
        coords = tr.keys * np.float32(1 / np.sqrt(tr.keys.shape[-1]))
        return ctx.matches(*head_topk(ctx.model, ctx.vocab, "pattern", coords, tr.pattern_norms(), ctx.k, ctx.metric,
                                      ctx.use_cache, ctx.progress), shape)
    p = ctx.model.params
    L, H, T, D = tr.patterns.shape
    indexes = ctx.vocab.ln_indexes(p.ln1_w, p.ln1_b, ctx.metric)                          # LN1_l(W_E[words])
    found = LNIndex.search_stacked(indexes, [tr.patterns[l].reshape(H * T, D) for l in range(L)], ctx.k)
    return ctx.matches(np.stack([i for i, _ in found]), np.stack([s for _, s in found]), shape)


def message_matches(ctx: Context) -> Matches:
    """Top words of every message m[l, h, t] against lnf_w * W_E: Matches of shape [L, H, T]."""
    tr = ctx.trace
    shape = tr.attn.shape[:3]
    if tr.n_tokens >= MIN_TOKENS:   # low rank: rank values against (lnf_w * W_E) W_O[h]^T
        return ctx.matches(*head_topk(ctx.model, ctx.vocab, "message", tr.values, tr.message_norms(), ctx.k, ctx.metric,
                                      ctx.use_cache, ctx.progress), shape)
    return ctx.matches(*ctx.unembed_index.search(tr.messages.reshape(-1, tr.messages.shape[-1]), ctx.k), shape)


@dataclass(frozen=True)
class NeuronMatches:
    """The cached neuron meanings as Matches of shape [L, m]."""
    inputs: Matches      # W_in columns vs LN2_l(W_E)
    outputs: Matches     # W_out rows vs lnf_w * W_E: what a positive activation writes
    negatives: Matches   # -W_out rows: what a negative activation writes


def neuron_matches(ctx: Context, nm: NeuronMeanings) -> NeuronMatches:
    shape = nm.in_ids.shape[:2]
    return NeuronMatches(*(ctx.matches(i, s, shape) for i, s in
                           ((nm.in_ids, nm.in_scores), (nm.out_ids, nm.out_scores), (nm.neg_ids, nm.neg_scores))))


def logit_lens_top(ctx: Context, k: int) -> np.ndarray:
    """Top-k token ids of ln_f(resid_pre[l]) @ W_E^T for every layer and token: [L+1, T, k].

    Layers 0..L-1 in one exact search over W_E by dot product (analysis.search.knn: chunked matmul, bounded
    memory, no transposed copies); layer L is the model's own logits, ranked as they are (so the last row
    agrees with the predictions, and 1/(L+1) of the work is not done twice)."""
    from minigpt2.layers import layer_norm

    tr, p = ctx.trace, ctx.model.params
    L1, T, D = tr.resid_pre.shape
    x = layer_norm(tr.resid_pre[:-1].reshape((L1 - 1) * T, D), p.lnf_w, p.lnf_b, ctx.model.cfg.layer_norm_eps)
    index = VocabIndex(p.W_E, "dot", chunk_bytes=64 << 20)        # 64 MiB of scores at a time: the trace is live
    lens = index.search(x, k)[0].reshape(L1 - 1, T, k)
    final = np.concatenate([select_topk(tr.logits[a:a + 64], k)[0] for a in range(0, T, 64)])   # [T, k]
    return np.concatenate([lens, final[None]])
