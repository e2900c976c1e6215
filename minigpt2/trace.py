"""Trace: the one record of a run, and decompose(): a residual as the exact sum of its parts (the rows'
types are in decomposition.py)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .decomposition import Contributions, Decomposition
from .edits import Compiled, put_head_z
from .errors import check_index
from .readout import attended_values, ln_final_scale, logit_directions
from .weights import Params


@dataclass(frozen=True)
class Trace:
    """Everything a forward pass computed. L layers, H heads, T tokens, D d_model, m d_mlp, V vocab.

    patterns, messages and mlp_pre are properties: they are exact functions of what is stored (keys, values,
    ln2 and the weights), expanded on first access and then kept. run() so writes 2 L H T D + L T m floats
    less (1.06 GB at T=1024 for GPT-2 small), and the analysis of a long prompt, which searches in the
    rank-e space, never expands them.
    """
    params: Params             # the weights it ran with (a reference, not a copy)
    ids: np.ndarray            # [T]           token ids
    edits: tuple               # the Edit.neuron / head / resid applied in this run (empty: a clean run)
    compiled: Compiled         # the same edits as the arrays the pass applied (the decomposition reads these)
    resid_pre: np.ndarray      # [L+1, T, D]   input of each block; resid_pre[L] is the final residual, before ln_f
    resid_mid: np.ndarray      # [L, T, D]     resid_pre[l] + attn_out[l]: the MLP's input
    ln1: np.ndarray            # [L, T, D]     x~ = LN1_l(resid_pre[l]): what every head reads
    attn: np.ndarray           # [L, H, T, T]  attention probabilities, query x key (0 above the diagonal)
    keys: np.ndarray           # [L, H, T, e]  x~ W_K + b_K: the low-rank coordinates of the patterns
    values: np.ndarray         # [L, H, T, e]  x~ W_V + b_V: the low-rank coordinates of the messages
    pattern_bias: np.ndarray   # [L, H, T]     c_k = b_Q . (x~_k W_K + b_K) / sqrt(e); score[q, k] = x~_q . p_k + c_k
    attn_out: np.ndarray       # [L, T, D]     sum_h sum_k attn[l, h, :, k] m_k + b_O[l]
    ln2: np.ndarray            # [L, T, D]     LN2_l(resid_mid[l]): what the neurons read
    mlp_acts: np.ndarray       # [L, T, m]     neuron activations, gelu_new(mlp_pre)
    mlp_out: np.ndarray        # [L, T, D]     mlp_acts @ W_out + b_out
    logits: np.ndarray         # [T, V]        LN_f(resid_pre[L]) @ W_E^T
    layer_norm_eps: float = 1e-5

    @cached_property
    def patterns(self) -> np.ndarray:
        """[L, H, T, D] p_k = (x~_k W_K + b_K) W_Q^T / sqrt(e): the pattern token k leaves behind."""
        e = self.keys.shape[-1]
        return np.matmul(self.keys * np.float32(1.0 / np.sqrt(e)), self.params.W_Q.transpose(0, 1, 3, 2))

    @cached_property
    def messages(self) -> np.ndarray:
        """[L, H, T, D] m_k = (x~_k W_V + b_V) W_O: the message token k leaves behind."""
        return np.matmul(self.values, self.params.W_O)                  # [L, H, T, e] @ [L, H, e, D]

    @cached_property
    def mlp_pre(self) -> np.ndarray:
        """[L, T, m] neuron pre-activations, LN2(resid_mid) @ W_in + b_in (before any Edit.neuron)."""
        return np.matmul(self.ln2, self.params.W_in) + self.params.b_in[:, None, :]

    @cached_property
    def predicted(self) -> np.ndarray:
        """[T] the greedy prediction at each position, argmax of logits. (logits is the transposed view of a
        [V, T] product, the fast layout for BLAS; a plain argmax over its last axis would copy all of it, so
        this reads it 64 rows at a time.)"""
        return np.concatenate([np.argmax(self.logits[a:a + 64], axis=-1) for a in range(0, self.n_tokens, 64)])

    def pattern_norms(self) -> np.ndarray:
        """[L, H, T] |p_k| from the keys alone: |k W_Q^T|^2 = k (W_Q^T W_Q) k^T, an e x e Gram per head."""
        e = self.keys.shape[-1]
        G = np.matmul(self.params.W_Q.transpose(0, 1, 3, 2), self.params.W_Q)      # [L, H, e, e]
        kq = self.keys * np.float32(1.0 / np.sqrt(e))
        return np.sqrt(np.maximum(np.einsum("lhte,lhef,lhtf->lht", kq, G, kq), 0)).astype(np.float32)

    def message_norms(self) -> np.ndarray:
        """[L, H, T] |m_k| from the values alone: |v W_O|^2 = v (W_O W_O^T) v^T."""
        G = np.matmul(self.params.W_O, self.params.W_O.transpose(0, 1, 3, 2))        # [L, H, e, e]
        return np.sqrt(np.maximum(np.einsum("lhte,lhef,lhtf->lht", self.values, G, self.values), 0)).astype(
            np.float32)

    def __repr__(self) -> str:
        L, H, T = self.attn.shape[:3]
        return f"<Trace: {T} tokens, {L} layers x {H} heads, edits {list(map(str, self.edits)) or 'none'}>"

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_layers(self) -> int:
        return int(self.attn.shape[0])

    def decompose(self, layer: int, pos: int) -> "Decomposition":
        """resid_pre[layer, pos] as rows that sum to it exactly (up to float32 rounding).

        Rows: token embedding, position embedding, then for each earlier layer:
        one per (head, source token <= pos) = attn x message, b_O, one per neuron
        = activation x W_out row, b_out. Per-neuron rows are built here, for this
        position only (they would be 113 MB per token for GPT-2 small).

        Under an Edit.resid at (l0, pos) with l0 <= layer, the latest such patch is one row ("patch") that
        stands for the embeddings and every layer before l0; the layers from l0 on follow as usual.
        """
        layer, pos = self._check(layer, pos)
        blocks = list(self._blocks(layer, pos))
        cat = np.concatenate
        return Decomposition(layer=layer, pos=pos, kind=cat([b[0] for b in blocks]),
                             layer_of=cat([b[1] for b in blocks]), head=cat([b[2] for b in blocks]),
                             source=cat([b[3] for b in blocks]), neuron=cat([b[4] for b in blocks]),
                             weight=cat([b[5] for b in blocks]).astype(np.float32),
                             vectors=cat([b[6] for b in blocks]).astype(np.float32, copy=False),
                             target=self.resid_pre[layer, pos], params=self.params,
                             layer_norm_eps=self.layer_norm_eps)

    def contributions(self, layer: int, pos: int, tokens) -> "Contributions":
        """The rows of decompose(layer, pos) with their norms and direct effects on the logits of tokens, built
        one block (a layer's messages, its neurons, ...) at a time: for a long prompt the rows' D-wide vectors
        (0.5 GB at T=1000 for GPT-2 small) never exist at once. The rows still prove their sum: error. The
        few rows that stand alone (embeddings or patch, b_O, b_out) keep their vectors: .single."""
        layer, pos = self._check(layer, pos)
        target = self.resid_pre[layer, pos]
        W = logit_directions(self.params, tokens, ln_final_scale(target, self.layer_norm_eps))   # [K, D]
        parts, single, total = [], [], np.zeros(target.shape, np.float64)
        for kind, layer_of, head, source, neuron, weight, vecs in self._blocks(layer, pos):
            total += vecs.sum(axis=0, dtype=np.float64)
            parts.append((kind, layer_of, head, source, neuron, weight,
                          np.sqrt(np.einsum("nd,nd->n", vecs, vecs)), vecs @ W.T))
            if kind[0] not in ("message", "neuron"):
                single.append(vecs)
        cat = lambda i: np.concatenate([b[i] for b in parts])  # noqa: E731
        kind = cat(0)
        return Contributions(layer=layer, pos=pos, kind=kind, layer_of=cat(1), head=cat(2), source=cat(3),
                             neuron=cat(4), weight=cat(5).astype(np.float32), norm=cat(6), effects=cat(7),
                             error=float(np.abs(total - target).max()),
                             single=np.flatnonzero(~np.isin(kind, ("message", "neuron"))),
                             single_vectors=np.concatenate(single))

    def _check(self, layer: int, pos: int) -> tuple[int, int]:
        """(layer, pos) checked, pos made non-negative (pos may count from the end, as -1)."""
        layer = check_index(layer, self.n_layers + 1, "layer (L = the final residual)")
        T = self.n_tokens
        if isinstance(pos, (int, np.integer)) and not isinstance(pos, bool) and -T <= pos < 0:
            pos += T                                                    # -1: the last position
        return layer, check_index(pos, T, "position")

    def head_outputs(self, n: int | None = None) -> list[np.ndarray]:
        """L x [H, n, e]: each head's output before W_O, attn @ v, at the first n positions (all by default),
        or what an Edit.head_z put in its place. Times W_O[l, h] it is what the head adds to the residual."""
        n = self.n_tokens if n is None else n
        return [put_head_z(z, replaced) for z, replaced in
                zip(attended_values(self.attn, self.values, n), self.compiled.head_z)]

    def prediction_score(self) -> tuple[int, int]:
        """(correct, total): greedy next-token predictions that match the prompt's next token (the essay's
        "3 out of 7"); the last position has no next token."""
        return int((self.predicted[:-1] == self.ids[1:]).sum()), self.n_tokens - 1

    def attention_on_0(self) -> np.ndarray:
        """[L, H] each head's mean attention on position 0 over the queries after it (the essay's "no-op"
        position). With one token there is no later query: the only query, position 0 itself, gives 1."""
        if self.n_tokens == 1:
            return np.ones(self.attn.shape[:2], np.float32)
        return self.attn[:, :, 1:, 0].mean(axis=2)

    def _blocks(self, layer: int, pos: int):
        """The decomposition's rows, a block at a time: (kind, layer_of, head, source, neuron, weight, vectors)."""
        H = self.attn.shape[1]
        p = self.params
        S = pos + 1
        m = p.W_out.shape[1]

        def block(kind, n, layer_=-1, head=None, source=None, neuron=None, weight=None, vecs=None):
            return (np.full(n, kind), np.full(n, layer_), np.full(n, -1) if head is None else head,
                    np.full(n, pos) if source is None else source, np.full(n, -1) if neuron is None else neuron,
                    np.ones(n, np.float32) if weight is None else weight, vecs)

        patch = self.compiled.latest_patch(layer, pos)
        start = 0
        if patch is not None:
            start, vector = patch
            yield block("patch", 1, start, vecs=vector[None])
        else:
            yield block("tok_embed", 1, vecs=p.W_E[self.ids[pos]][None])
            yield block("pos_embed", 1, vecs=p.W_pos[pos][None])
        for l in range(start, layer):
            replaced = self.compiled.head_z[l]                             # {h: [T, e]}: outputs patched whole
            hs = np.array([h for h in range(H) if h not in replaced], np.int64)
            a = self.attn[l, hs, pos, :S]                                  # [h, S]
            msgs = np.matmul(self.values[l, hs, :S], p.W_O[l, hs])         # [h, S, e] @ [h, e, D]: just these
            yield block("message", hs.size * S, l, head=np.repeat(hs, S), source=np.tile(np.arange(S), hs.size),
                        weight=a.reshape(-1), vecs=(a[:, :, None] * msgs).reshape(hs.size * S, -1))
            if replaced:
                yield block("head_out", len(replaced), l, head=np.array(list(replaced)),
                            vecs=np.stack([z[pos] @ p.W_O[l, h] for h, z in replaced.items()]))
            yield block("b_O", 1, l, vecs=p.b_O[l][None])
            acts = self.mlp_acts[l, pos]                                   # [m]
            yield block("neuron", m, l, neuron=np.arange(m), weight=acts, vecs=acts[:, None] * p.W_out[l])
            yield block("b_out", 1, l, vecs=p.b_out[l][None])
