"""The backward pass: d loss / d every residual state, attention probability, activation and weight.

It walks forward.blocks' loop in reverse, one small function per op (as llm.c's *_backward functions), from
a Trace: what the forward pass recorded, plus what one layer recomputes from it (q, the pre-activations and,
under a head edit, the softmax before the edit). Edits are constants of the graph: a scaled probability or
activation passes scale x upstream, and a patched row cuts the gradient to everything before it.

Letters as in forward.py: t query, s key, h head, d d_model, e d_head, m d_mlp, v vocab; n scored positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import GPT2Config
from .edits import put_head_z
from .errors import InputError
from .layers import inv_std, normalize
from .trace import Trace
from .weights import Params


@dataclass(frozen=True)
class Grads:
    """Gradients of the loss (mean cross-entropy over the scored positions) of one run."""
    loss: float
    resid_pre: np.ndarray   # [L+1, T, D] d loss / d resid_pre[l] (the state block l reads; [L]: ln_f's input)
    resid_mid: np.ndarray   # [L, T, D] d loss / d resid_mid[l] (= d loss / d attention block l's output)
    attn: np.ndarray        # [L, H, T, T] d loss / d the attention probabilities after the softmax (and edits);
                            #   above the diagonal, where the probability is 0, what a weight there would get
    mlp_acts: np.ndarray    # [L, T, m] d loss / d the activations after GELU (and edits)
    params: Params          # d loss / d each weight, with Params' names and shapes; W_E's has the unembedding's share
    n_scored: int           # positions whose target counted (the loss is their mean)


def check_targets(targets, ids: np.ndarray, d_vocab: int) -> np.ndarray:
    """[T] int64 targets: targets[t] is what logits[t] should predict, negative: not scored. Default: the
    next token, ids[1:], the last position unscored (so the loss is HF's with labels=ids)."""
    T = ids.shape[0]
    if targets is None:
        targets = np.append(ids[1:], -1)
    t = np.asarray(targets)
    if t.shape != (T,) or not (t.size == 0 or np.issubdtype(t.dtype, np.integer)):
        raise InputError(f"targets must be {T} integers (one per position, negative: not scored), got "
                         f"{t.dtype} of shape {t.shape}")
    if (t >= d_vocab).any():
        i = int(np.argmax(t >= d_vocab))
        raise InputError(f"target {int(t[i])} at position {i} is outside the vocabulary 0..{d_vocab - 1}")
    if not (t >= 0).any():
        raise InputError("no position is scored: the loss needs a target (two tokens or more, or targets >= 0)")
    return t.astype(np.int64)


def layer_norm_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, eps: float):
    """y = w x^ + b, x^ = (x - mean) / std: (dx [T, D], dw [D], db [D]) from dy [T, D]."""
    xhat = normalize(x, eps)                                                   # [T, D]
    g = dy * w
    dx = inv_std(x, eps) * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx.astype(x.dtype, copy=False), (dy * xhat).sum(0), dy.sum(0)


def gelu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d gelu_new(x) / dx times dy: gelu_new(x) = x sigma(2y), y = c (x + a x^3)."""
    c, a = np.float32(np.sqrt(2.0 / np.pi)), np.float32(0.044715)
    with np.errstate(over="ignore"):
        sig = 1.0 / (1.0 + np.exp(-2 * c * (x + a * x * x * x)))               # [T, m]
    return dy * (sig + x * sig * (1 - sig) * 2 * c * (1 + 3 * a * x * x))


def unembed_backward(tr: Trace, targets: np.ndarray, eps: float):
    """loss, d loss / d resid_pre[L] [T, D], dW_E (the unembedding's share) [V, D], dlnf_w, dlnf_b [D]."""
    p, x = tr.params, tr.resid_pre[-1]
    scored = np.flatnonzero(targets >= 0)                                      # [n]
    n, cols = scored.size, np.arange(scored.size)
    z = tr.logits.T[:, scored].astype(np.float64)                              # [V, n]: the logits' own layout
    z -= z.max(0)
    np.exp(z, out=z)
    total = z.sum(0)                                                           # [n]
    loss = float(-(np.log(z[targets[scored], cols] / total)).mean())
    z /= total                                                                 # softmax
    z[targets[scored], cols] -= 1                                              # - onehot
    dlogits = (z / n).astype(x.dtype)                                          # [V, n] d loss / d logits^T
    y = normalize(x[scored], eps) * p.lnf_w + p.lnf_b                          # ln_f's output [n, D]
    dW_E = dlogits @ y                                                         # [V, n] @ [n, D]
    dy = (p.W_E.T @ dlogits).T                                                 # [D, V] @ [V, n]: BLAS's fast way
    dxs, dlnf_w, dlnf_b = layer_norm_backward(dy, x[scored], p.lnf_w, eps)
    dx = np.zeros_like(x)
    dx[scored] = dxs
    return loss, dx, dW_E, dlnf_w, dlnf_b


def mlp_backward(tr: Trace, l: int, g: np.ndarray, scale, eps: float):
    """Block l's MLP from g = d loss / d its output [T, D]: (d resid_mid [T, D] through the MLP alone,
    d acts [T, m], (dW_in, db_in, dW_out, db_out, dln2_w, dln2_b))."""
    p = tr.params
    acts = tr.mlp_acts[l]                                                      # [T, m] after the edit
    dacts = g @ p.W_out[l].T                                                   # [T, D] @ [D, m]
    dW_out, db_out = acts.T @ g, g.sum(0)                                      # [m, T] @ [T, D]
    pre = tr.ln2[l] @ p.W_in[l] + p.b_in[l]                                    # [T, m] recomputed
    dpre = gelu_backward(dacts if scale is None else dacts * scale, pre)
    dW_in, db_in = tr.ln2[l].T @ dpre, dpre.sum(0)                             # [D, T] @ [T, m]
    dmid, dln2_w, dln2_b = layer_norm_backward(dpre @ p.W_in[l].T, tr.resid_mid[l], p.ln2_w[l], eps)
    return dmid, dacts, (dW_in, db_in, dW_out, db_out, dln2_w, dln2_b)


def attention_backward(tr: Trace, l: int, g: np.ndarray, scale, replaced: dict, eps: float):
    """Block l's attention from g = d loss / d its output [T, D]: (d resid_pre[l] [T, D] through attention
    alone, d attn [H, T, T], (dW_Q, dW_K, dW_V, db_Q, db_K, db_V, dW_O, db_O, dln1_w, dln1_b))."""
    p = tr.params
    H, T, e = tr.keys.shape[1:]
    A, k, v, ln1 = tr.attn[l], tr.keys[l], tr.values[l], tr.ln1[l]
    z = put_head_z(A @ v, replaced)                                            # [H, T, e] recomputed
    dW_O = z.transpose(0, 2, 1) @ g                                            # [H, e, T] @ [T, D]
    dz = g @ p.W_O[l].transpose(0, 2, 1)                                       # [T, D] @ [H, D, e] -> [H, T, e]
    dz[list(replaced)] = 0                                                     # a replaced output is a constant
    dA = dz @ v.transpose(0, 2, 1)                                             # [H, T, T] (see Grads.attn)
    dv = A.transpose(0, 2, 1) @ dz                                             # [H, T, e]
    q = (ln1 @ p.W_Q[l] + p.b_Q[l][:, None]) * np.float32(1.0 / np.sqrt(e))   # [H, T, e] recomputed, scaled
    if scale is None:
        P, dP = A, dA
    else:                                                                      # the softmax before the edit
        P = np.where(np.tril(np.ones((T, T), bool)), q @ k.transpose(0, 2, 1), -np.inf)
        P = np.exp(P - P.max(-1, keepdims=True))
        P /= P.sum(-1, keepdims=True)
        dP = dA * scale
    dS = P * (dP - (P * dP).sum(-1, keepdims=True))                            # [H, T, T], 0 where masked
    dq = (dS @ k) * np.float32(1.0 / np.sqrt(e))                               # d the unscaled q
    dk = dS.transpose(0, 2, 1) @ q                                             # [H, T, e]
    dW = [ln1.T @ d for d in (dq, dk, dv)]                                     # [D, T] @ [H, T, e] -> [H, D, e]
    db = [d.sum(1) for d in (dq, dk, dv)]                                      # [H, e]
    dln1 = sum(d.transpose(1, 0, 2).reshape(T, H * e) @ W[l].transpose(0, 2, 1).reshape(H * e, -1)
               for d, W in ((dq, p.W_Q), (dk, p.W_K), (dv, p.W_V)))             # [T, H e] @ [H e, D]
    dx, dln1_w, dln1_b = layer_norm_backward(dln1, tr.resid_pre[l], p.ln1_w[l], eps)
    return dx, dA, (*dW, *db, dW_O, g.sum(0), dln1_w, dln1_b)


# the per-layer weights in the order attention_backward then mlp_backward return their gradients
LAYER_FIELDS = ("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O", "b_O", "ln1_w", "ln1_b",
                "W_in", "b_in", "W_out", "b_out", "ln2_w", "ln2_b")


def backward(tr: Trace, cfg: GPT2Config, targets=None) -> Grads:
    """Grads of tr's run (with its edits) for the loss on targets (see check_targets)."""
    p, eps, L = tr.params, cfg.layer_norm_eps, cfg.n_layers
    targets = check_targets(targets, tr.ids, cfg.d_vocab)
    ce = tr.compiled
    d_resid = np.zeros_like(tr.resid_pre)
    d_mid = np.zeros_like(tr.resid_mid)
    d_attn = np.zeros_like(tr.attn)
    d_acts = np.zeros_like(tr.mlp_acts)
    per_layer = {f: [None] * L for f in LAYER_FIELDS}
    loss, g, dW_E, dlnf_w, dlnf_b = unembed_backward(tr, targets, eps)
    d_resid[L] = g
    for l in range(L - 1, -1, -1):
        g = _cut(g, ce.patches[l + 1])                       # d loss / d block l's output, before any patch
        dmid, d_acts[l], mlp_g = mlp_backward(tr, l, g, ce.act_scale[l], eps)
        g = d_mid[l] = g + dmid                              # d loss / d resid_mid[l]
        dx, d_attn[l], attn_g = attention_backward(tr, l, g, ce.attn_scale[l], ce.head_z[l], eps)
        g = d_resid[l] = g + dx                              # d loss / d resid_pre[l]
        for f, a in zip(LAYER_FIELDS, attn_g + mlp_g):
            per_layer[f][l] = a
    g = _cut(g, ce.patches[0])                               # d loss / d the embeddings' sum
    T = tr.n_tokens
    np.add.at(dW_E, tr.ids, g)
    dW_pos = np.zeros_like(p.W_pos)
    dW_pos[:T] = g
    params = Params(W_E=dW_E, W_pos=dW_pos, lnf_w=dlnf_w, lnf_b=dlnf_b,
                    **{f: np.stack(v) for f, v in per_layer.items()})
    return Grads(loss=loss, resid_pre=d_resid, resid_mid=d_mid, attn=d_attn, mlp_acts=d_acts, params=params,
                 n_scored=int((targets >= 0).sum()))


def _cut(g: np.ndarray, patches: dict) -> np.ndarray:
    """g with the patched rows zeroed: a patched row does not depend on what came before it."""
    if not patches:
        return g
    g = g.copy()
    g[list(patches)] = 0
    return g
