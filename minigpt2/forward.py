"""The GPT-2 forward pass in NumPy, float32, one sequence (no batch axis).

Letters: t query position, s key position, h head, d d_model, e d_head, m d_mlp, v vocab.
"""
from __future__ import annotations

import numpy as np

from .config import GPT2Config
from .edits import HeadEdit, NeuronEdit, ResidEdit, check_edits
from .errors import InputError, NumericError
from .layers import gelu_new, layer_norm, softmax_
from .trace import Trace
from .weights import Params

BLOCK = 128   # query rows per attention block: keys past the block's last row are never computed


def check_ids(ids, cfg: GPT2Config) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise InputError(f"expected a 1-D sequence of token ids, got shape {ids.shape}")
    if ids.size == 0:
        raise InputError("empty input: give at least one token")
    if not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"token ids must be integers, got dtype {ids.dtype}")
    if ids.size > cfg.n_ctx:
        raise InputError(f"{ids.size} tokens is longer than the model's context of {cfg.n_ctx}")
    bad = (ids < 0) | (ids >= cfg.d_vocab)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"token id {int(ids[i])} at position {i} is outside the vocabulary 0..{cfg.d_vocab - 1}")
    return ids.astype(np.int64)


def check_finite(logits: np.ndarray, resid: np.ndarray | None = None) -> np.ndarray:
    """logits [T, V] unchanged, or NumericError: float32 overflowed (only weights far out of range do this)."""
    if np.isfinite(logits.sum(dtype=np.float64)):        # exact: float32 values cannot overflow a float64 sum,
        return logits                                    # and NaN or Inf anywhere makes it non-finite
    where = ""
    if resid is not None:                                                 # [L+1, T, D]: first layer gone bad
        bad = ~np.isfinite(resid).reshape(resid.shape[0], -1).all(axis=1)
        if bad.any():
            where = f" (the residual stream is non-finite from layer {int(np.argmax(bad))})"
    raise NumericError("the forward pass overflowed float32: the logits hold NaN or Inf" + where +
                       "; the weights are far outside GPT-2's range")


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, attn: np.ndarray,
                     head_edits: tuple = ()) -> np.ndarray:
    """softmax(q k^T + causal mask) v for q, k, v [H, T, e] (q already scaled by 1/sqrt(e)).

    Writes the probabilities into attn [H, T, T] and returns z [H, T, e]. attn must hold zeros above the
    diagonal on entry (np.zeros: the kernel's zeroed pages, no pass of ours): only the causal part is written.
    Works in blocks of query rows, so the masked half of the scores is never computed. head_edits
    (HeadEdit) scale probabilities after the softmax, before they weight the values.
    """
    H, T, e = q.shape
    z = np.empty((H, T, e), np.float32)
    above = np.triu(np.full((BLOCK, BLOCK), -np.inf, np.float32), 1)      # mask within a diagonal block
    for t0 in range(0, T, BLOCK):
        t1 = min(T, t0 + BLOCK)
        s = attn[:, t0:t1, :t1]                                              # [H, b, t1] view
        np.matmul(q[:, t0:t1], k[:, :t1].transpose(0, 2, 1), out=s)          # [H, b, e] @ [H, e, t1]
        s[:, :, t0:t1] += above[: t1 - t0, : t1 - t0]
        softmax_(s)
        for ed in head_edits:                                                # [b, t1] rows of one head
            rows = slice(None) if ed.dest is None else (slice(0, 0) if not t0 <= ed.dest < t1 else ed.dest - t0)
            cols = slice(None) if ed.source is None else ed.source
            if ed.source is None or ed.source < t1:
                s[ed.head, rows, cols] *= np.float32(ed.scale)
        np.matmul(s, v[:, :t1], out=z[:, t0:t1])                              # [H, b, t1] @ [H, t1, e]
    return z


def attention(x: np.ndarray, p: Params, l: int, eps: float, attn: np.ndarray, head_edits: tuple = ()):
    """One attention block on resid_pre [T, D], attention written into attn [H, T, T].

    Returns x~ = LN1(x) [T, D], k, v [H, T, e] and the block's output [T, D] (b_O included).
    """
    T = x.shape[0]
    H, e = p.W_Q.shape[1], p.W_Q.shape[3]
    xt = layer_norm(x, p.ln1_w[l], p.ln1_b[l], eps)                  # [T, D]
    q = np.matmul(xt, p.W_Q[l])                                       # [T, D] @ [H, D, e] -> [H, T, e]
    q += p.b_Q[l][:, None, :]
    q *= np.float32(1.0 / np.sqrt(e))
    k = np.matmul(xt, p.W_K[l])
    k += p.b_K[l][:, None, :]
    v = np.matmul(xt, p.W_V[l])
    v += p.b_V[l][:, None, :]
    z = causal_attention(q, k, v, attn, head_edits)                   # [H, T, e]
    out = z.transpose(1, 0, 2).reshape(T, H * e) @ p.W_O[l].reshape(H * e, -1)   # [T, H e] @ [H e, D]
    out += p.b_O[l]
    return xt, k, v, out


def mlp(x: np.ndarray, p: Params, l: int, eps: float, neuron_edits: tuple = ()):
    """One MLP block on resid_mid [T, D]. Returns LN2(x) [T, D], pre [T, m], acts [T, m], out [T, D].

    neuron_edits (NeuronEdit) scale activations; acts is what the block actually used."""
    xt = layer_norm(x, p.ln2_w[l], p.ln2_b[l], eps)                  # [T, D]
    pre = xt @ p.W_in[l]                                              # [T, D] -> [T, m]
    pre += p.b_in[l]
    acts = gelu_new(pre)
    for ed in neuron_edits:
        acts[slice(None) if ed.pos is None else ed.pos, ed.neuron] *= np.float32(ed.scale)
    out = acts @ p.W_out[l]                                           # [T, m] -> [T, D]
    out += p.b_out[l]
    return xt, pre, acts, out


def unembed(x: np.ndarray, p: Params, eps: float) -> np.ndarray:
    # (W_E @ x^T)^T: BLAS runs this layout 2x faster than x @ W_E^T, with no transposed copy of W_E
    return (p.W_E @ layer_norm(x, p.lnf_w, p.lnf_b, eps).T).T         # [V, D] @ [D, T] -> [V, T] -> [T, V]


def embed(ids: np.ndarray, p: Params) -> np.ndarray:
    return p.W_E[ids] + p.W_pos[: ids.shape[0]]                       # [T, D]


def logits(p: Params, cfg: GPT2Config, ids, edits=(), start: int = 0, resid: np.ndarray | None = None) -> np.ndarray:
    """Plain forward pass, nothing recorded: [T, V]. edits as in run().

    start, resid: resume at block `start` from resid = resid_pre[start] [T, D] of an earlier run (whose
    blocks before start the edits do not touch): many single-component ablations share their prefix.
    """
    ids = check_ids(ids, cfg)
    edits = check_edits(edits, cfg, ids.shape[0])
    if start and (resid is None or resid.shape != (ids.shape[0], cfg.d_model)):
        raise InputError(f"resuming at block {start} needs resid_pre[{start}] of shape ({ids.shape[0]}, {cfg.d_model})")
    if any(e.layer < start for e in edits):
        raise InputError(f"an edit before block {start} cannot apply to a pass resumed there")
    with np.errstate(over="ignore", invalid="ignore"):     # overflow is reported once, by check_finite
        return check_finite(_logits(p, cfg, ids, edits, start, resid))


def _logits(p: Params, cfg: GPT2Config, ids: np.ndarray, edits: tuple, start: int, resid) -> np.ndarray:
    T = ids.shape[0]
    scratch = np.zeros((cfg.n_heads, T, T), np.float32)             # attention, overwritten each layer (causal part)
    x = embed(ids, p) if start == 0 else np.array(resid, np.float32)
    for l in range(start, cfg.n_layers):
        x = _patched(x, edits, l)
        heads, neurons = _layer_edits(edits, l)
        x = x + attention(x, p, l, cfg.layer_norm_eps, scratch, heads)[-1]
        x = x + mlp(x, p, l, cfg.layer_norm_eps, neurons)[-1]
    return unembed(_patched(x, edits, cfg.n_layers), p, cfg.layer_norm_eps)


def _layer_edits(edits: tuple, layer: int) -> tuple[tuple, tuple]:
    """(head edits, neuron edits) of this layer."""
    return (tuple(e for e in edits if isinstance(e, HeadEdit) and e.layer == layer),
            tuple(e for e in edits if isinstance(e, NeuronEdit) and e.layer == layer))


def _patched(x: np.ndarray, edits: tuple, layer: int) -> np.ndarray:
    """x [T, D] with the Edit.resid of this layer applied (in place: x is always this pass's own array)."""
    for e in edits:
        if isinstance(e, ResidEdit) and e.layer == layer:
            x[e.pos] = e.vector
    return x


def run(p: Params, cfg: GPT2Config, ids, edits=()) -> Trace:
    """Forward pass that records every pattern and message (as keys and values: Trace expands them on
    access), attention, activation and residual.

    edits (minigpt2.Edit.neuron / head / resid) are applied as the pass goes; the Trace records what ran.
    """
    ids = check_ids(ids, cfg)
    edits = check_edits(edits, cfg, ids.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):     # overflow is reported once, by check_finite
        return _run(p, cfg, ids, edits)


def _run(p: Params, cfg: GPT2Config, ids: np.ndarray, edits: tuple) -> Trace:
    L, H, D, m, T = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_mlp, ids.shape[0]
    eps = cfg.layer_norm_eps
    inv_sqrt = np.float32(1.0 / np.sqrt(cfg.d_head))
    f32 = np.float32
    resid_pre = np.empty((L + 1, T, D), f32)
    resid_mid, ln1, attn_out, ln2, mlp_out = (np.empty((L, T, D), f32) for _ in range(5))
    attn = np.zeros((L, H, T, T), f32)                     # zero above the diagonal, never written there
    pattern_bias = np.empty((L, H, T), f32)
    keys, values = np.empty((L, H, T, cfg.d_head), f32), np.empty((L, H, T, cfg.d_head), f32)
    mlp_acts = np.empty((L, T, m), f32)

    x = embed(ids, p)
    for l in range(L):
        resid_pre[l] = x = _patched(x, edits, l)
        heads, neurons = _layer_edits(edits, l)
        ln1[l], keys[l], values[l], attn_out[l] = attention(x, p, l, eps, attn[l], heads)
        # patterns and messages are not stored: Trace expands them from keys and values on access
        np.einsum("hte,he->ht", keys[l] * inv_sqrt, p.b_Q[l], out=pattern_bias[l])   # c_k carries the 1/sqrt(e)
        np.add(x, attn_out[l], out=resid_mid[l])
        ln2[l], _, mlp_acts[l], mlp_out[l] = mlp(resid_mid[l], p, l, eps, neurons)
        x = resid_mid[l] + mlp_out[l]
    resid_pre[L] = x = _patched(x, edits, L)
    return Trace(params=p, ids=ids, edits=edits, resid_pre=resid_pre, resid_mid=resid_mid, ln1=ln1, attn=attn,
                 keys=keys, values=values, pattern_bias=pattern_bias, attn_out=attn_out, ln2=ln2,
                 mlp_acts=mlp_acts, mlp_out=mlp_out, logits=check_finite(unembed(x, p, eps), resid_pre),
                 layer_norm_eps=eps)
