"""The GPT-2 forward pass in NumPy, float32, one sequence (no batch axis).

Letters: t query position, s key position, h head, d d_model, e d_head, m d_mlp, v vocab.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import GPT2Config
from .edits import Compiled, check_edits, compile_edits, put_head_z
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


def check_finite(logits: np.ndarray, resid: np.ndarray | None = None, edited: bool = False) -> np.ndarray:
    """logits [T, V] unchanged, or NumericError: float32 overflowed (only weights far out of range, or an edit's
    huge scale or vector, do this). edited: the pass ran edits, so they are named as a possible cause."""
    if np.isfinite(logits.sum(dtype=np.float64)):        # exact: float32 values cannot overflow a float64 sum,
        return logits                                    # and NaN or Inf anywhere makes it non-finite
    where = ""
    if resid is not None:                                                 # [L+1, T, D]: first layer gone bad
        bad = ~np.isfinite(resid).reshape(resid.shape[0], -1).all(axis=1)
        if bad.any():
            where = f" (the residual stream is non-finite from layer {int(np.argmax(bad))})"
    cause = ("an edit's scale or vector is too large for float32, or the weights are far outside GPT-2's range"
             if edited else "the weights are far outside GPT-2's range")
    raise NumericError("the forward pass overflowed float32: the logits hold NaN or Inf" + where + "; " + cause)


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, attn: np.ndarray,
                     scale: np.ndarray | None = None) -> np.ndarray:
    """softmax(q k^T + causal mask) v for q, k, v [H, T, e] (q already scaled by 1/sqrt(e)).

    Writes the probabilities into attn [H, T, T] and returns z [H, T, e]. attn must hold zeros above the
    diagonal on entry (np.zeros: the kernel's zeroed pages, no pass of ours): only the causal part is written.
    Works in blocks of BLOCK query rows (read at call time), so the masked half of the scores is never
    computed. scale [H, T, T] (compiled head edits) multiplies the probabilities after the softmax, before
    they weight the values.
    """
    H, T, e = q.shape
    b = BLOCK
    z = np.empty((H, T, e), q.dtype)
    above = np.triu(np.full((b, b), -np.inf, np.float32), 1)              # mask within a diagonal block
    for t0 in range(0, T, b):
        t1 = min(T, t0 + b)
        s = attn[:, t0:t1, :t1]                                              # [H, b, t1] view
        np.matmul(q[:, t0:t1], k[:, :t1].transpose(0, 2, 1), out=s)          # [H, b, e] @ [H, e, t1]
        s[:, :, t0:t1] += above[: t1 - t0, : t1 - t0]
        softmax_(s)
        if scale is not None:
            s *= scale[:, t0:t1, :t1]                                        # the same [H, b, t1] rows
        np.matmul(s, v[:, :t1], out=z[:, t0:t1])                              # [H, b, t1] @ [H, t1, e]
    return z


def attention(x: np.ndarray, p: Params, l: int, eps: float, attn: np.ndarray, scale: np.ndarray | None = None,
              head_z: dict | None = None):
    """One attention block on resid_pre [T, D], attention written into attn [H, T, T].

    Returns x~ = LN1(x) [T, D], k, v [H, T, e] and the block's output [T, D] (b_O included). scale: the
    compiled attention multiplier; head_z {h: [T, e]}: heads whose output before W_O is replaced.
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
    z = put_head_z(causal_attention(q, k, v, attn, scale), head_z or {})   # [H, T, e]
    out = z.transpose(1, 0, 2).reshape(T, H * e) @ p.W_O[l].reshape(H * e, -1)   # [T, H e] @ [H e, D]
    out += p.b_O[l]
    return xt, k, v, out


def mlp(x: np.ndarray, p: Params, l: int, eps: float, scale: np.ndarray | None = None):
    """One MLP block on resid_mid [T, D]. Returns LN2(x) [T, D], pre [T, m], acts [T, m], out [T, D].

    scale [T, m] (compiled neuron edits) multiplies the activations; acts is what the block actually used."""
    xt = layer_norm(x, p.ln2_w[l], p.ln2_b[l], eps)                  # [T, D]
    pre = xt @ p.W_in[l]                                              # [T, D] -> [T, m]
    pre += p.b_in[l]
    acts = gelu_new(pre)
    if scale is not None:
        acts *= scale
    out = acts @ p.W_out[l]                                           # [T, m] -> [T, D]
    out += p.b_out[l]
    return xt, pre, acts, out


def unembed(x: np.ndarray, p: Params, eps: float) -> np.ndarray:
    # (W_E @ x^T)^T: BLAS runs this layout 2x faster than x @ W_E^T, with no transposed copy of W_E
    return (p.W_E @ layer_norm(x, p.lnf_w, p.lnf_b, eps).T).T         # [V, D] @ [D, T] -> [V, T] -> [T, V]


def embed(ids: np.ndarray, p: Params) -> np.ndarray:
    return p.W_E[ids] + p.W_pos[: ids.shape[0]]                       # [T, D]


@dataclass(frozen=True)
class Record:
    """The arrays run() fills, one slot per layer: the Trace's fields (see Trace for their meaning)."""
    resid_pre: np.ndarray      # [L+1, T, D]
    resid_mid: np.ndarray      # [L, T, D]
    ln1: np.ndarray            # [L, T, D]
    attn: np.ndarray           # [L, H, T, T]  zero above the diagonal, never written there
    keys: np.ndarray           # [L, H, T, e]
    values: np.ndarray         # [L, H, T, e]
    pattern_bias: np.ndarray   # [L, H, T]
    attn_out: np.ndarray       # [L, T, D]
    ln2: np.ndarray            # [L, T, D]
    mlp_acts: np.ndarray       # [L, T, m]
    mlp_out: np.ndarray        # [L, T, D]

    @classmethod
    def empty(cls, cfg: GPT2Config, T: int, dtype=np.float32) -> "Record":
        """Buffers for T tokens, in the weights' dtype (float32; float64 weights run in float64)."""
        L, H, D, e, m, f32 = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, dtype
        LTD = lambda: np.empty((L, T, D), f32)  # noqa: E731
        return cls(resid_pre=np.empty((L + 1, T, D), f32), resid_mid=LTD(), ln1=LTD(),
                   attn=np.zeros((L, H, T, T), f32), keys=np.empty((L, H, T, e), f32),
                   values=np.empty((L, H, T, e), f32), pattern_bias=np.empty((L, H, T), f32), attn_out=LTD(),
                   ln2=LTD(), mlp_acts=np.empty((L, T, m), f32), mlp_out=LTD())


def blocks(p: Params, cfg: GPT2Config, x: np.ndarray, ce: Compiled, start: int = 0,
           rec: Record | None = None) -> np.ndarray:
    """The one layer loop: resid_pre[start] x [T, D] (this pass's own array) -> the final residual [T, D].

    Applies the compiled edits ce as it goes (patches before each block and after the last, attention and
    activation multipliers inside). rec: the arrays to record into (run), or None to keep nothing (logits).
    """
    eps, L = cfg.layer_norm_eps, cfg.n_layers
    scratch = np.zeros((cfg.n_heads, x.shape[0], x.shape[0]), x.dtype) if rec is None else None
    inv_sqrt = np.float32(1.0 / np.sqrt(cfg.d_head))
    for l in range(start, L):
        x = ce.patch(x, l)
        attn = scratch if rec is None else rec.attn[l]                   # [H, T, T]: written in place
        ln1, k, v, attn_out = attention(x, p, l, eps, attn, ce.attn_scale[l], ce.head_z[l])
        mid = x + attn_out                                                # resid_mid [T, D]
        ln2, _, acts, mlp_out = mlp(mid, p, l, eps, ce.act_scale[l])
        if rec is not None:
            rec.resid_pre[l], rec.ln1[l], rec.keys[l], rec.values[l] = x, ln1, k, v
            # patterns and messages are not stored: Trace expands them from keys and values on access
            np.einsum("hte,he->ht", k * inv_sqrt, p.b_Q[l], out=rec.pattern_bias[l])  # c_k: 1/sqrt(e) inside
            rec.attn_out[l], rec.resid_mid[l], rec.ln2[l], rec.mlp_acts[l], rec.mlp_out[l] = (
                attn_out, mid, ln2, acts, mlp_out)
        x = mid + mlp_out
    x = ce.patch(x, L)
    if rec is not None:
        rec.resid_pre[L] = x
    return x


def logits(p: Params, cfg: GPT2Config, ids, edits=(), start: int = 0, resid: np.ndarray | None = None) -> np.ndarray:
    """Plain forward pass, nothing recorded: [T, V]. edits as in run().

    start, resid: resume at block `start` (0..L) from resid = resid_pre[start] [T, D] of an earlier run whose
    blocks before start the edits do not touch: many single-component ablations share their prefix.
    """
    ids = check_ids(ids, cfg)
    T = ids.shape[0]
    ce = compile_edits(check_edits(edits, cfg, T), cfg, T)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= cfg.n_layers:
        raise InputError(f"start must be a block 0..{cfg.n_layers}, got {start!r}")
    x = embed(ids, p) if start == 0 and resid is None else _resume_from(resid, start, T, cfg)
    first = ce.first_layer
    if first is not None and first < start:
        raise InputError(f"an edit at layer {first} cannot apply to a pass resumed at block {start}")
    with np.errstate(over="ignore", invalid="ignore"):     # overflow is reported once, by check_finite
        return check_finite(unembed(blocks(p, cfg, x, ce, start), p, cfg.layer_norm_eps), edited=bool(edits))


def _resume_from(resid, start: int, T: int, cfg: GPT2Config) -> np.ndarray:
    """resid as this pass's own float32 [T, D] array, or InputError."""
    shape = (T, cfg.d_model)
    if resid is None:
        raise InputError(f"resuming at block {start} needs resid = resid_pre[{start}] of shape {shape}")
    try:
        x = np.array(resid, dtype=np.float32)                             # a copy: the pass writes into it
    except (TypeError, ValueError) as e:
        raise InputError(f"resid must be a float array of shape {shape}: {e}") from None
    if x.shape != shape:
        raise InputError(f"resuming at block {start} needs resid = resid_pre[{start}] of shape {shape}, "
                         f"got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(f"resid holds NaN or Inf: give resid_pre[{start}] of a finite run")
    return x


def run(p: Params, cfg: GPT2Config, ids, edits=()) -> Trace:
    """Forward pass that records every pattern and message (as keys and values: Trace expands them on
    access), attention, activation and residual.

    edits (minigpt2.Edit.neuron / head / resid) are applied as the pass goes; the Trace records what ran.
    """
    ids = check_ids(ids, cfg)
    T = ids.shape[0]
    edits = check_edits(edits, cfg, T)
    ce = compile_edits(edits, cfg, T)
    rec = Record.empty(cfg, T, p.W_E.dtype)
    with np.errstate(over="ignore", invalid="ignore"):     # overflow is reported once, by check_finite
        x = blocks(p, cfg, embed(ids, p), ce, 0, rec)
        out = check_finite(unembed(x, p, cfg.layer_norm_eps), rec.resid_pre, edited=bool(edits))
    return Trace(params=p, ids=ids, edits=edits, compiled=ce, logits=out, layer_norm_eps=cfg.layer_norm_eps,
                 **vars(rec))
